//! `--config FILE.toml`: a ready node config, validated by the config crate.

use std::path::Path;

use anyhow::{Context, Result};
use kmm_day1_config::NodeConfig;

use super::Loaded;

pub fn load(path: &Path, name: Option<&str>) -> Result<Loaded> {
    let config = NodeConfig::load(path)?;
    let name = match name {
        Some(n) => {
            // The name decides the file on the node; check it as that file.
            config
                .validate(Path::new(&format!("{n}.toml")))
                .with_context(|| format!("{} with --name {n}", path.display()))?;
            n.to_string()
        }
        None => NodeConfig::name_of(path).unwrap_or_default().to_string(),
    };
    Ok(Loaded::plain(name, config, Vec::new()))
}
