//! The input kinds. Each turns its input into a [`NodeConfig`]; then
//! [`finish`] runs the config crate's own `validate()`, the one schema.
//!
//! A new input kind (e.g. KMM's `BootModuleConfig`) is a new file here plus
//! one arm in [`manifest::load`].

mod flags;
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
    /// A pool role read from the input (a Module's node-role selector).
    pub pool: Option<String>,
    /// Fields that were ignored, each saying which and why.
    pub warnings: Vec<String>,
}

pub fn load(args: &GenerateArgs) -> Result<Loaded> {
    if let Some(path) = &args.config {
        node_toml::load(path, args.name.as_deref())
    } else if let Some(path) = &args.from_module {
        let mut loaded = manifest::load(path, args.name.as_deref())?;
        flags::apply_pull_flags(args, &mut loaded.config);
        finish(
            loaded,
            &format!("{}: the node config mapped from it", path.display()),
        )
    } else {
        let loaded = flags::load(args)?;
        finish(loaded, "the node config built from the command-line flags")
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
