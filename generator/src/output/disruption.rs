//! A `MachineConfiguration` (operator.openshift.io/v1, named `cluster`) whose
//! `spec.nodeDisruptionPolicy` tells the MCO that changing our files or units
//! needs no drain and no reboot (OpenShift 4.17+). Apply as a merge patch:
//! `oc patch machineconfiguration cluster --type=merge --patch-file=…`.
//!
//! `None` is right because the agent re-reads its config on every run: a
//! changed image is pulled on the next pull run, and swapped after the
//! reboot the agent itself asks for (or live, with `after_pull = "live"`).

use anyhow::{bail, Result};
use kmm_day1_config::{units, AGENT_PATH};
use serde::Serialize;

/// `files` and `units` each take at most 50 entries
/// (openshift/api operator/v1 `NodeDisruptionPolicyConfig`, MaxItems=50).
pub const MAX_ENTRIES: usize = 50;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MachineConfiguration {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Serialize)]
struct Metadata {
    name: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    node_disruption_policy: Policy,
}

#[derive(Debug, Serialize)]
struct Policy {
    files: Vec<FileAction>,
    units: Vec<UnitAction>,
}

#[derive(Debug, Serialize)]
struct FileAction {
    path: String,
    actions: Vec<Action>,
}

#[derive(Debug, Serialize)]
struct UnitAction {
    name: String,
    actions: Vec<Action>,
}

#[derive(Debug, Serialize)]
struct Action {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The policy for the agent, the units and every config in `config_paths`
/// (one per input document: the policy is cluster-wide, so one for all).
pub fn render(config_paths: &[String]) -> Result<String> {
    let none = || vec![Action { kind: "None" }];
    let mut paths: Vec<&str> = config_paths.iter().map(String::as_str).collect();
    paths.push(AGENT_PATH);
    paths.sort_unstable();
    paths.dedup();
    if paths.len() > MAX_ENTRIES {
        bail!(
            "the disruption policy would list {} files, above the {MAX_ENTRIES} that MachineConfiguration's nodeDisruptionPolicy.files accepts: split the input",
            paths.len()
        );
    }
    let files: Vec<FileAction> = paths
        .iter()
        .map(|p| FileAction {
            path: p.to_string(),
            actions: none(),
        })
        .collect();
    let mut unit_actions: Vec<UnitAction> = units::ALL
        .iter()
        .map(|u| UnitAction {
            name: u.name.to_string(),
            actions: none(),
        })
        .collect();
    unit_actions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(super::yaml(&MachineConfiguration {
        api_version: "operator.openshift.io/v1",
        kind: "MachineConfiguration",
        metadata: Metadata { name: "cluster" },
        spec: Spec {
            node_disruption_policy: Policy {
                files,
                units: unit_actions,
            },
        },
    }))
}
