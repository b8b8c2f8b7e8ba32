//! `kind: MachineConfig`, with the Ignition config as `spec.config`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ignition;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MachineConfig<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    spec: Spec<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metadata<'a> {
    pub name: &'a str,
    pub labels: BTreeMap<&'static str, &'a str>,
}

#[derive(Debug, Serialize)]
struct Spec<'a> {
    config: &'a ignition::Config,
}

pub fn metadata<'a>(name: &'a str, pool: &'a str) -> Metadata<'a> {
    Metadata {
        name,
        labels: BTreeMap::from([(super::ROLE_LABEL, pool)]),
    }
}

pub fn render(name: &str, pool: &str, config: &ignition::Config) -> String {
    let mc = |config| MachineConfig {
        api_version: "machineconfiguration.openshift.io/v1",
        kind: "MachineConfig",
        metadata: metadata(name, pool),
        spec: Spec { config },
    };
    let mut elided = super::Elided::default();
    let mut light = config.clone();
    for f in &mut light.storage.files {
        f.contents.source = elided.swap(&f.contents.source);
    }
    super::yaml_light(&mc(config), &mc(&light), &elided)
}
