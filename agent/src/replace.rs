//! `replace` (see `cli::REPLACE_HELP`).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli;

pub fn run(opts: &cli::ReplaceOpts) -> Result<ExitCode> {
    let _ = opts;
    bail!("`replace` is not implemented in this build of kmm-day1-agent yet")
}
