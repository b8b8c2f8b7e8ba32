//! A `MachineConfiguration` (operator.openshift.io/v1, named `cluster`) whose
//! `spec.nodeDisruptionPolicy` tells the MCO that changing our files or units
//! needs no drain and no reboot (OpenShift 4.17+). Apply as a merge patch:
//! `oc patch machineconfiguration cluster --type=merge --patch-file=…`.
//!
//! `None` is right because the agent re-reads its config on every run: a
//! changed image is pulled on the next pull run, and swapped after the
//! reboot the agent itself asks for (or live, with `after_pull = "live"`).

use kmm_day1_config::{units, AGENT_PATH};
use serde::Serialize;

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

pub fn render(config_path: &str) -> String {
    let none = || vec![Action { kind: "None" }];
    let mut files: Vec<FileAction> = [AGENT_PATH, config_path]
        .iter()
        .map(|p| FileAction {
            path: p.to_string(),
            actions: none(),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut unit_actions: Vec<UnitAction> = units::ALL
        .iter()
        .map(|u| UnitAction {
            name: u.name.to_string(),
            actions: none(),
        })
        .collect();
    unit_actions.sort_by(|a, b| a.name.cmp(&b.name));
    super::yaml(&MachineConfiguration {
        api_version: "operator.openshift.io/v1",
        kind: "MachineConfiguration",
        metadata: Metadata { name: "cluster" },
        spec: Spec {
            node_disruption_policy: Policy {
                files,
                units: unit_actions,
            },
        },
    })
}
