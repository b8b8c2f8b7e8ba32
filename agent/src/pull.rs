//! `pull` (see `cli::PULL_HELP`).

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli;

pub fn run(opts: &cli::PullOpts) -> Result<ExitCode> {
    let _ = opts;
    bail!("`pull` is not implemented in this build of kmm-day1-agent yet")
}
