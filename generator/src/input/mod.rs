//! The input kinds. Each turns its input into a [`NodeConfig`]; then
//! [`finish`] runs the config crate's own `validate()`, the one schema.
//!
//! A new input kind is a new file here plus one arm in `manifest::one`.

mod boot_module_config;
mod crd;
mod flags;
mod kmm_image;
mod manifest;
mod mappings;

pub use mappings::describe as describe_mapping;
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

impl Loaded {
    /// A config from flags or a node TOML: no pool or MachineConfig name
    /// of its own.
    fn plain(name: String, config: NodeConfig, warnings: Vec<String>) -> Self {
        Loaded {
            name,
            config,
            pool: None,
            pool_source: "",
            mc_name: None,
            warnings,
        }
    }
}

/// A custom resource of a test, from its YAML.
#[cfg(test)]
fn cr(yaml: &str) -> serde_json::Value {
    serde_norway::from_str(yaml).unwrap()
}

/// The node configs of the input: one, or one per document of a
/// multi-document `--from-module` file.
pub fn load(args: &GenerateArgs) -> Result<Vec<Loaded>> {
    // Checked before anything else: the name is a path on the node.
    if let Some(n) = &args.name {
        check_name(n, "--name")?;
    }
    let mut all = load_inputs(args)?;
    let several = all.len() > 1;
    for l in &mut all {
        check_name(&l.name, "the config name")?;
        let name = l.name.clone();
        let at = |msg: String| {
            if several {
                format!("config `{name}`: {msg}")
            } else {
                msg
            }
        };
        let warnings = mappings::check(&l.config, args.arch)
            .map_err(|e| anyhow::anyhow!(at(e.to_string())))?;
        l.warnings.extend(warnings.into_iter().map(at));
    }
    Ok(all)
}

/// The config name becomes `/etc/kmm-day1/<name>.toml`. The agent reads only
/// the files directly in that directory and takes the name from the file
/// name, so a name with a `/` (or `..`) would install a file no node ever
/// reads, or one outside the directory. The config crate checks the file
/// name it is given; this checks the whole name, before any path is made.
fn check_name(name: &str, what: &str) -> Result<()> {
    if !kmm_day1_config::valid_config_name(name) {
        anyhow::bail!(
            "{what} `{name}` is not a valid config name: it becomes the file {}/<NAME>.toml, which the agent reads only when NAME is one file name of 1-128 characters of [A-Za-z0-9._-] not starting with `.` (no `/`); e.g. --name {}",
            kmm_day1_config::CONFIG_DIR,
            suggest_name(name)
        );
    }
    Ok(())
}

/// A valid name close to `name`, for the error's example.
fn suggest_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches(|c| c == '-' || c == '.');
    if s.is_empty() {
        "my-driver".to_string()
    } else {
        s.chars().take(128).collect()
    }
}

fn load_inputs(args: &GenerateArgs) -> Result<Vec<Loaded>> {
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
