//! Every generated Ignition config validates against the upstream JSON
//! schema of its spec version, and is accepted by the real `ignition-validate`.

#![allow(clippy::unwrap_used)]

mod util;

use std::process::Command;

use util::{generate, CASES};

fn validator(version: &str) -> jsonschema::Validator {
    let file = format!(
        "ignition-v{}.schema.json",
        version.replace(".0", "").replace('.', "_")
    );
    let path = kmm_day1_tests::shared_reference(&file);
    let schema: serde_json::Value = serde_json::from_slice(&util::read(&path)).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn ignition_matches_the_json_schema_of_its_version() {
    for version in ["3.2.0", "3.4.0"] {
        let v = validator(version);
        for case in &CASES {
            let extra = ["--ignition-version", version];
            let ign: serde_json::Value =
                serde_json::from_str(generate(case, "ignition", &extra).ok()).unwrap();
            assert_eq!(ign["ignition"]["version"], version);
            let errors: Vec<String> = v.iter_errors(&ign).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{} {version}: {errors:#?}", case.name);
            // The MachineConfig carries the very same config.
            let mc: serde_json::Value =
                serde_norway::from_str(generate(case, "machineconfig", &extra).ok()).unwrap();
            assert_eq!(mc["spec"]["config"], ign);
        }
    }
}

#[test]
fn schema_check_is_not_vacuous() {
    // A config the MCO and Ignition would refuse must fail the same check.
    let bad = serde_json::json!({
        "ignition": {"version": "3.2.0"},
        "storage": {"files": [{"path": "/x", "mode": "0755"}]},
    });
    assert!(!validator("3.2.0").is_valid(&bad));
}

#[test]
fn ignition_validate_accepts_every_output() {
    if !kmm_day1_tests::require_tool("ignition-validate") {
        return;
    }
    let dir = util::scratch("ignition-validate");
    // Ignition learnt spec 3.4.0 in 2.15; Debian's 2.14 knows it only as
    // 3.4.0-experimental, so 3.4.0 is checked by the schema test alone there.
    let mut versions = vec!["3.2.0"];
    if ignition_at_least_2_15() {
        versions.push("3.4.0");
    }
    for version in versions {
        for case in &CASES {
            let f = dir.join(format!("{}-{version}.ign", case.name));
            generate(
                case,
                "ignition",
                &["--ignition-version", version, "-o", f.to_str().unwrap()],
            )
            .ok();
            let out = Command::new("ignition-validate").arg(&f).output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}{}",
                f.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // And it does refuse something: a file with a relative path.
    let f = dir.join("bad.ign");
    std::fs::write(
        &f,
        r#"{"ignition":{"version":"3.2.0"},"storage":{"files":[{"path":"rel"}]}}"#,
    )
    .unwrap();
    assert!(!Command::new("ignition-validate")
        .arg(&f)
        .status()
        .unwrap()
        .success());
}

fn ignition_at_least_2_15() -> bool {
    let out = Command::new("ignition-validate")
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // "Ignition Debian 2.14.0+ds1-1+b6" / "Ignition v2.19.0"
    let ver = text
        .split_whitespace()
        .find_map(|w| {
            let w = w.trim_start_matches('v');
            let mut it = w.split(['.', '+', '-']);
            Some((
                it.next()?.parse::<u32>().ok()?,
                it.next()?.parse::<u32>().ok()?,
            ))
        })
        .unwrap_or((0, 0));
    ver >= (2, 15)
}
