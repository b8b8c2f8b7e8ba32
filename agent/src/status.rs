//! `status` (see `cli::STATUS_HELP`).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli;

pub fn run(opts: &cli::StatusOpts) -> Result<ExitCode> {
    let _ = opts;
    bail!("`status` is not implemented in this build of kmm-day1-agent yet")
}
