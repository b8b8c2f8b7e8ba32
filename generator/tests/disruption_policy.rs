//! `--format disruption-policy` against the schema of OpenShift's
//! `MachineConfiguration` (operator.openshift.io/v1) `spec.nodeDisruptionPolicy`,
//! as openshift/api `operator/v1/types_machineconfiguration.go` declares it
//! (same rules in release-4.17 and master; cited in docs/kmm.md):
//!
//! - `files`, `units`: MaxItems=50, listType=map keyed by `path` / `name`
//!   (so unique);
//! - `actions`: MaxItems=10; type enum Reboot, Drain, Reload, Restart,
//!   DaemonReload, None; CEL `self.exists(x, x.type=='None') ? size(self) == 1`
//!   (and the same for Reboot); `reload`/`restart` only with Reload/Restart;
//! - unit names: MaxLength=255, CEL
//!   `self.matches('\\.(service|socket|device|mount|automount|swap|target|path|timer|snapshot|slice|scope)$')`
//!   and `self.matches('^[a-zA-Z0-9:._\\\\-]+\\..')`;
//! - file paths: the CRD has no rule, but the MCO matches them against the
//!   MachineConfig's Ignition `storage.files[].path`, which must be absolute.
//!
//! No API server runs here, so the rules are checked in code, and every
//! entry is matched against the MachineConfig it belongs to.

#![allow(clippy::unwrap_used)]

mod util;

use serde_json::Value;
use util::{kmm_day1, CASES, FAKE_AGENT, MULTI_DOC};

const ACTION_TYPES: [&str; 6] = [
    "Reboot",
    "Drain",
    "Reload",
    "Restart",
    "DaemonReload",
    "None",
];
const UNIT_SUFFIXES: [&str; 12] = [
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "snapshot",
    "slice",
    "scope",
];

fn check_actions(actions: &Value, at: &str) {
    let a = actions
        .as_array()
        .unwrap_or_else(|| panic!("{at}: actions"));
    assert!(!a.is_empty() && a.len() <= 10, "{at}: 1..=10 actions");
    for x in a {
        let t = x["type"].as_str().unwrap();
        assert!(ACTION_TYPES.contains(&t), "{at}: type {t}");
        assert_eq!(x.get("reload").is_some(), t == "Reload", "{at}: reload");
        assert_eq!(x.get("restart").is_some(), t == "Restart", "{at}: restart");
        if t == "None" || t == "Reboot" {
            assert_eq!(a.len(), 1, "{at}: {t} must stand alone");
        }
    }
}

/// The CRD's two CEL rules on a service name, and its MaxLength.
fn valid_unit_name(n: &str) -> bool {
    let suffix_ok = n
        .rsplit_once('.')
        .is_some_and(|(_, s)| UNIT_SUFFIXES.contains(&s));
    // `^[a-zA-Z0-9:._\\-]+\..`: one or more allowed characters, then a `.`
    // and any character; the class includes `.`, so the first `.` that has
    // a character after it, preceded by at least one allowed character.
    let b = n.as_bytes();
    let allowed =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b':' | b'.' | b'_' | b'\\' | b'-');
    let mut prefix_ok = false;
    for i in 1..b.len().saturating_sub(1) {
        if !allowed(b[i - 1]) {
            break;
        }
        if b[i] == b'.' {
            prefix_ok = true;
            break;
        }
    }
    n.len() <= 255 && suffix_ok && prefix_ok
}

/// Check one policy against the CRD rules, and that it covers exactly the
/// files and units of `mcs` (the MachineConfigs it goes with).
fn check_policy(text: &str, mcs: &[Value]) {
    let p: Value = serde_norway::from_str(text).unwrap();
    assert_eq!(p["apiVersion"], "operator.openshift.io/v1");
    assert_eq!(p["kind"], "MachineConfiguration");
    assert_eq!(
        p["metadata"]["name"], "cluster",
        "the one cluster-wide object"
    );
    let policy = p["spec"]["nodeDisruptionPolicy"].as_object().unwrap();
    let keys: Vec<&String> = policy.keys().collect();
    assert_eq!(
        keys,
        ["files", "units"],
        "only fields of NodeDisruptionPolicyConfig"
    );
    let files = policy["files"].as_array().unwrap();
    let units = policy["units"].as_array().unwrap();
    assert!(files.len() <= 50 && units.len() <= 50, "MaxItems=50");
    let mut paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    let mut names: Vec<&str> = units.iter().map(|u| u["name"].as_str().unwrap()).collect();
    for f in files {
        let path = f["path"].as_str().unwrap();
        assert!(path.starts_with('/'), "{path}: not absolute");
        assert_eq!(f.as_object().unwrap().len(), 2, "path and actions only");
        check_actions(&f["actions"], path);
        assert_eq!(f["actions"], serde_json::json!([{"type": "None"}]));
    }
    for u in units {
        let name = u["name"].as_str().unwrap();
        assert!(valid_unit_name(name), "{name}: not a valid service name");
        assert_eq!(u.as_object().unwrap().len(), 2, "name and actions only");
        check_actions(&u["actions"], name);
        assert_eq!(u["actions"], serde_json::json!([{"type": "None"}]));
    }
    let (np, nn) = (paths.len(), names.len());
    paths.dedup();
    names.dedup();
    assert_eq!(
        (paths.len(), names.len()),
        (np, nn),
        "listType=map: unique keys"
    );

    let mut mc_paths: Vec<&str> = Vec::new();
    let mut mc_units: Vec<&str> = Vec::new();
    for mc in mcs {
        let ign = &mc["spec"]["config"];
        for f in ign["storage"]["files"].as_array().unwrap() {
            mc_paths.push(f["path"].as_str().unwrap());
        }
        for u in ign["systemd"]["units"].as_array().unwrap() {
            mc_units.push(u["name"].as_str().unwrap());
        }
    }
    mc_paths.sort_unstable();
    mc_paths.dedup();
    mc_units.sort_unstable();
    mc_units.dedup();
    assert_eq!(
        paths, mc_paths,
        "the policy covers exactly the MachineConfigs' files"
    );
    assert_eq!(
        names, mc_units,
        "the policy covers exactly the MachineConfigs' units"
    );
}

fn yaml_stream(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn every_example_policy_follows_the_crd_rules_and_matches_its_machineconfig() {
    for case in &CASES {
        let policy = util::generate(case, "disruption-policy", &[]);
        let mc = util::generate(case, "machineconfig", &[]);
        check_policy(policy.ok(), &yaml_stream(mc.ok()));
    }
    let run = |format: &str| {
        kmm_day1(&[
            "generate",
            "--from-module",
            MULTI_DOC,
            "--agent",
            FAKE_AGENT,
            "--format",
            format,
        ])
    };
    let mcs = yaml_stream(run("machineconfig").ok());
    assert_eq!(mcs.len(), 2);
    check_policy(run("disruption-policy").ok(), &mcs);
}

#[test]
fn unit_name_rule_is_the_crds() {
    for ok in [
        "kmm-day1-pull.service",
        "a.timer",
        "x:y\\z_1.mount",
        "crio-wipe.service",
    ] {
        assert!(valid_unit_name(ok), "{ok}");
    }
    for bad in [
        ".service",
        "a.conf",
        "a b.service",
        "a/b.service",
        "service",
        "",
    ] {
        assert!(!valid_unit_name(bad), "{bad}");
    }
    assert!(!valid_unit_name(&format!("{}.service", "a".repeat(250))));
}

/// The agent's path plus one config per document: 49 documents make the
/// 50 files the CRD allows; 50 documents are refused before the API server
/// would reject the patch.
#[test]
fn fifty_file_limit() {
    let dir = util::scratch("policy-limit");
    let doc = |i: usize| {
        format!(
            "apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: BootModuleConfig\nmetadata: {{name: m{i}}}\nspec:\n  machineConfigName: 99-worker-m{i}\n  machineConfigPoolName: worker\n  kernelModuleImage: quay.io/a/m{i}\n  kernelModuleName: m{i}\n"
        )
    };
    let stream = |n: usize| (0..n).map(doc).collect::<Vec<_>>().join("---\n");
    let f = dir.join("many.yaml");
    std::fs::write(&f, stream(49)).unwrap();
    let args = [
        "generate",
        "--from-module",
        f.to_str().unwrap(),
        "--format",
        "disruption-policy",
    ];
    let out = kmm_day1(&args);
    let p: Value = serde_norway::from_str(out.ok()).unwrap();
    assert_eq!(
        p["spec"]["nodeDisruptionPolicy"]["files"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
    std::fs::write(&f, stream(50)).unwrap();
    let line = kmm_day1(&args).one_line_error().to_string();
    assert!(
        line.contains(
            "51 files, above the 50 that MachineConfiguration's nodeDisruptionPolicy.files accepts"
        ),
        "{line}"
    );
}
