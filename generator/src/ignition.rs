//! The Ignition config that installs the agent, the node config and the units.
//!
//! Our own small structs instead of a typed Ignition crate: the MCO accepts
//! only `storage.files` and `systemd.units`, and every field here is always
//! set, so the output has no `null`s and no empty objects.

use anyhow::{bail, Result};
use kmm_day1_config::{units, AGENT_PATH, CONFIG_DIR};
use serde::Serialize;

use crate::encode;

/// Spec versions OpenShift accepts that we emit: 3.2.0 for 4.12+, 3.4.0 for
/// 4.14+ (3.5.0 only from 4.19, whose MCO would reject it on older pools).
pub const VERSIONS: [&str; 2] = ["3.2.0", "3.4.0"];

/// Mode of the agent binary and of the config file.
pub const AGENT_MODE: u32 = 0o755;
pub const CONFIG_MODE: u32 = 0o644;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub ignition: Meta,
    pub storage: Storage,
    pub systemd: Systemd,
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    pub files: Vec<File>,
}

#[derive(Debug, Clone, Serialize)]
pub struct File {
    pub path: String,
    pub mode: u32,
    pub overwrite: bool,
    pub contents: Contents,
}

#[derive(Debug, Clone, Serialize)]
pub struct Contents {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'static str>,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Systemd {
    pub units: Vec<Unit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    pub name: String,
    pub enabled: bool,
    pub contents: String,
}

/// What goes onto the node, before encoding.
#[derive(Debug)]
pub struct Payload<'a> {
    /// The config's name: `/etc/kmm-day1/<name>.toml`.
    pub name: &'a str,
    pub agent: &'a [u8],
    pub config_toml: &'a str,
}

impl Payload<'_> {
    pub fn config_path(&self) -> String {
        format!("{CONFIG_DIR}/{}.toml", self.name)
    }
}

pub fn check_version(v: &str) -> Result<()> {
    if !VERSIONS.contains(&v) {
        bail!(
            "--ignition-version {v} is not supported: use 3.2.0 (OpenShift 4.12 and later) or 3.4.0 (4.14 and later)"
        );
    }
    Ok(())
}

pub fn build(p: &Payload<'_>, version: &str) -> Config {
    let file = |path: String, mode: u32, data: &[u8]| {
        let e = encode::data_url(data);
        File {
            path,
            mode,
            overwrite: true,
            contents: Contents {
                compression: e.compression,
                source: e.source,
            },
        }
    };
    Config {
        ignition: Meta {
            version: version.to_string(),
        },
        storage: Storage {
            files: vec![
                file(AGENT_PATH.to_string(), AGENT_MODE, p.agent),
                file(p.config_path(), CONFIG_MODE, p.config_toml.as_bytes()),
            ],
        },
        systemd: Systemd {
            units: units::ALL
                .iter()
                .map(|u| Unit {
                    name: u.name.to_string(),
                    enabled: true,
                    contents: u.contents.to_string(),
                })
                .collect(),
        },
    }
}

/// The Ignition config as pretty JSON with a final newline.
pub fn to_json(c: &Config) -> String {
    let mut s = serde_json::to_string_pretty(c)
        .unwrap_or_else(|e| unreachable!("plain structs always serialise: {e}"));
    s.push('\n');
    s
}
