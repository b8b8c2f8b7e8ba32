//! A Butane config (`variant: openshift`) equivalent to the MachineConfig:
//! `butane` turns it into the same files and units. The node config is
//! `contents.inline` so it stays readable; the agent is a gzip `data:` URL.

use kmm_day1_config::{units, AGENT_PATH};
use serde::Serialize;

use crate::ignition::{self, Payload};

/// The openshift variant's version that targets each Ignition spec.
pub fn variant_version(ignition_version: &str) -> &'static str {
    match ignition_version {
        "3.4.0" => "4.14.0",
        _ => "4.12.0",
    }
}

#[derive(Debug, Clone, Serialize)]
struct Butane<'a> {
    variant: &'static str,
    version: &'static str,
    metadata: super::machineconfig::Metadata<'a>,
    storage: Storage,
    systemd: Systemd,
}

#[derive(Debug, Clone, Serialize)]
struct Storage {
    files: Vec<File>,
}

#[derive(Debug, Clone, Serialize)]
struct File {
    path: String,
    mode: u32,
    overwrite: bool,
    contents: Contents,
}

#[derive(Debug, Clone, Serialize)]
struct Contents {
    #[serde(skip_serializing_if = "Option::is_none")]
    inline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
struct Systemd {
    units: Vec<Unit>,
}

#[derive(Debug, Clone, Serialize)]
struct Unit {
    name: &'static str,
    enabled: bool,
    contents: &'static str,
}

pub fn render(mc_name: &str, pool: &str, p: &Payload<'_>, ignition_version: &str) -> String {
    let agent = crate::encode::data_url(p.agent);
    let b = Butane {
        variant: "openshift",
        version: variant_version(ignition_version),
        metadata: super::machineconfig::metadata(mc_name, pool),
        storage: Storage {
            files: vec![
                File {
                    path: AGENT_PATH.to_string(),
                    mode: ignition::AGENT_MODE,
                    overwrite: true,
                    contents: Contents {
                        inline: None,
                        source: Some(agent.source),
                        compression: agent.compression,
                    },
                },
                File {
                    path: p.config_path(),
                    mode: ignition::CONFIG_MODE,
                    overwrite: true,
                    contents: Contents {
                        inline: Some(p.config_toml.to_string()),
                        source: None,
                        compression: None,
                    },
                },
            ],
        },
        systemd: Systemd {
            units: units::ALL
                .iter()
                .map(|u| Unit {
                    name: u.name,
                    enabled: true,
                    contents: u.contents,
                })
                .collect(),
        },
    };
    let mut elided = super::Elided::default();
    let mut light = b.clone();
    for f in &mut light.storage.files {
        if let Some(s) = &mut f.contents.source {
            *s = elided.swap(s);
        }
    }
    octal_modes(&super::yaml_light(&b, &light, &elided))
}

/// Butane configs write modes in octal (`mode: 0755`, which Butane's YAML
/// parser reads as octal); serde can only emit decimal, so the file-mode
/// lines are rewritten. They are the only lines that are exactly
/// `    mode: <digits>`: text inside a block scalar is indented deeper.
fn octal_modes(yaml: &str) -> String {
    const KEY: &str = "    mode: ";
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.split_inclusive('\n') {
        let mode = line
            .strip_prefix(KEY)
            .and_then(|rest| rest.trim_end_matches('\n').parse::<u32>().ok());
        match mode {
            Some(m) => out.push_str(&format!("{KEY}{m:04o}\n")),
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_modes_become_octal() {
        let y =
            "  - path: /a\n    mode: 493\n    contents: |\n      mode: 420\n        mode: 420\n";
        assert_eq!(
            octal_modes(y),
            "  - path: /a\n    mode: 0755\n    contents: |\n      mode: 420\n        mode: 420\n"
        );
    }
}
