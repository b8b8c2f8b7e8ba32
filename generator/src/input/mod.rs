//! The input kinds. Each turns its input into a [`NodeConfig`]; then
//! [`finish`] runs the config crate's own `validate()`, the one schema.
//!
//! A new input kind is a new file here plus one arm in `manifest::one`.

mod boot_module_config;
mod flags;
mod kmm_image;
mod manifest;
mod module_cr;
mod node_toml;

use std::path::Path;

use anyhow::{Context, Result};
use kmm_day1_config::NodeConfig;

use crate::cli::GenerateArgs;

/// A node config ready to render, and what the input suggested besides.
#[derive(Debug)]
pub struct Loaded {
    /// The config's name (`/etc/kmm-day1/<name>.toml`).
    pub name: String,
    pub config: NodeConfig,
    /// A pool role read from the input (a Module's node-role selector, a
    /// BootModuleConfig's machineConfigPoolName).
    pub pool: Option<String>,
    /// Where `pool` came from, for the warning when --pool differs.
    pub pool_source: &'static str,
    /// The MachineConfig's name, when the input names it (BootModuleConfig).
    pub mc_name: Option<String>,
    /// Fields that were ignored, each saying which and why.
    pub warnings: Vec<String>,
}

/// The node configs of the input: one, or one per document of a
/// multi-document `--from-module` file.
pub fn load(args: &GenerateArgs) -> Result<Vec<Loaded>> {
    if let Some(path) = &args.config {
        Ok(vec![node_toml::load(path, args.name.as_deref())?])
    } else if let Some(path) = &args.from_module {
        manifest::load(path, args.name.as_deref())?
            .into_iter()
            .map(|(at, mut loaded)| {
                flags::apply_pull_flags(args, &mut loaded.config);
                finish(loaded, &format!("{at}: the node config mapped from it"))
            })
            .collect()
    } else {
        let loaded = flags::load(args)?;
        Ok(vec![finish(
            loaded,
            "the node config built from the command-line flags",
        )?])
    }
}

/// Validate with the config crate, as the agent will when it reads the file.
fn finish(loaded: Loaded, what: &str) -> Result<Loaded> {
    let file = format!("{}.toml", loaded.name);
    loaded
        .config
        .validate(Path::new(&file))
        .with_context(|| format!("{what} is invalid"))?;
    Ok(loaded)
}
