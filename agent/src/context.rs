//! The settings stage: the command line's common options become what a
//! run acts on, once, at the CLI boundary (zincati's split between
//! `settings` and the agent that uses them). `pull`, `replace` and `status`
//! take a [`RunContext`] and never resolve the kernel release, read the
//! configs or open the store themselves, so a `pull` that swaps live hands
//! `replace` the very configs it pulled for.

use std::path::PathBuf;

use anyhow::Result;
use kmm_day1_config::{load_dir, NodeConfig};

use crate::cli;
use crate::kernel;
use crate::store::Store;

/// One run's kernel, configs and store.
#[derive(Debug)]
pub struct RunContext {
    /// `--kernel-release`, else the running kernel's.
    pub kernel: String,
    pub config_dir: PathBuf,
    /// `<config_dir>/*.toml`, by name.
    pub configs: Vec<(String, NodeConfig)>,
    pub store: Store,
}

impl RunContext {
    pub fn from_common(c: &cli::Common) -> Result<Self> {
        let kernel = match &c.kernel_release {
            Some(k) => k.clone(),
            None => kernel::running_release()?,
        };
        Ok(RunContext {
            kernel,
            configs: load_dir(&c.config_dir)?,
            config_dir: c.config_dir.clone(),
            store: Store::new(&c.store),
        })
    }
}
