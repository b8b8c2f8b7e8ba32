//! Golden outputs of every format for the three examples, and determinism.
//! `UPDATE_GOLDEN=1 cargo test -p kmm-day1 --test golden` rewrites them.

// Integration-test helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;

use kmm_day1_config::NodeConfig;
use util::{generate, kmm_day1, root, CASES, FAKE_AGENT, FORMATS};

#[test]
fn every_format_matches_its_golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for case in &CASES {
        for (format, ext) in FORMATS {
            let out = generate(case, format, &[]);
            let text = out.ok();
            let golden = root().join(format!(
                "generator/tests/golden/{}.{format}.{ext}",
                case.name
            ));
            if update {
                std::fs::write(&golden, text).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&golden)
                .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", golden.display()));
            if want != text {
                mismatches.push(golden.display().to_string());
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "outputs differ from goldens (review, then UPDATE_GOLDEN=1): {mismatches:#?}"
    );
}

#[test]
fn same_input_gives_byte_identical_output() {
    let dir = util::scratch("determinism");
    for case in &CASES {
        for (format, _) in FORMATS {
            let a = generate(case, format, &[]);
            let b = generate(case, format, &[]);
            assert_eq!(a.ok(), b.ok(), "{} {format}", case.name);
            // -o writes exactly what stdout would have carried.
            let file = dir.join(format!("{}.{format}", case.name));
            let c = generate(case, format, &["-o", file.to_str().unwrap()]);
            assert!(c.ok().is_empty(), "-o leaves stdout empty");
            assert_eq!(
                std::fs::read(&file).unwrap(),
                a.stdout,
                "{} {format} via -o",
                case.name
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The node config of a case, as the example file defines it.
fn expected_config(case: &util::Case) -> (String, NodeConfig) {
    let out = generate(case, "config", &[]);
    let name = match case.name {
        "module-cr" => "mlx5-oot".to_string(),
        n => n.to_string(),
    };
    let cfg = NodeConfig::parse(Path::new(&format!("{name}.toml")), out.ok()).unwrap();
    if case.example.ends_with(".toml") {
        assert_eq!(cfg, NodeConfig::load(&root().join(case.example)).unwrap());
    }
    (name, cfg)
}

#[test]
fn machineconfig_structure_and_payload() {
    let fake = util::read(root().join(FAKE_AGENT));
    for case in &CASES {
        let (name, cfg) = expected_config(case);
        let out = generate(case, "machineconfig", &[]);
        let mc: serde_json::Value = serde_norway::from_str(out.ok()).unwrap();
        assert_eq!(mc["apiVersion"], "machineconfiguration.openshift.io/v1");
        assert_eq!(mc["kind"], "MachineConfig");
        let pool = match case.name {
            "multi-module" => "gpu-worker",
            _ => "worker",
        };
        assert_eq!(mc["metadata"]["name"], format!("99-{pool}-kmm-day1-{name}"));
        assert_eq!(
            mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
            pool
        );
        // The MachineConfig CRD (openshift/api) knows spec.{config, osImageURL,
        // kernelArguments, extensions, fips, kernelType,
        // baseOSExtensionsContainerImage}; we set config alone, and a
        // metadata of name and the role label only.
        let top: Vec<&String> = mc.as_object().unwrap().keys().collect();
        assert_eq!(top, ["apiVersion", "kind", "metadata", "spec"]);
        let spec: Vec<&String> = mc["spec"].as_object().unwrap().keys().collect();
        assert_eq!(spec, ["config"]);
        let meta: Vec<&String> = mc["metadata"].as_object().unwrap().keys().collect();
        assert_eq!(meta, ["labels", "name"]);
        assert_eq!(mc["metadata"]["labels"].as_object().unwrap().len(), 1);
        let ign = &mc["spec"]["config"];
        assert_eq!(ign["ignition"]["version"], "3.2.0");
        // Only files and units: the MCO degrades nodes on anything else.
        let keys: Vec<&String> = ign.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["ignition", "storage", "systemd"]);
        assert_eq!(ign["storage"].as_object().unwrap().len(), 1);
        let files = ign["storage"]["files"].as_array().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0]["path"], "/usr/local/bin/kmm-day1-agent");
        assert_eq!(files[0]["mode"], 0o755);
        assert_eq!(util::decode_contents(&files[0]["contents"]), fake);
        assert_eq!(files[1]["path"], format!("/etc/kmm-day1/{name}.toml"));
        assert_eq!(files[1]["mode"], 0o644);
        for f in files {
            assert_eq!(f["overwrite"], true);
        }
        let text = String::from_utf8(util::decode_contents(&files[1]["contents"])).unwrap();
        assert_eq!(
            NodeConfig::parse(Path::new(&format!("{name}.toml")), &text).unwrap(),
            cfg
        );
        let units = ign["systemd"]["units"].as_array().unwrap();
        assert_eq!(units.len(), kmm_day1_config::units::ALL.len());
        for (u, want) in units.iter().zip(kmm_day1_config::units::ALL) {
            assert_eq!(u["name"], want.name);
            assert_eq!(u["enabled"], true);
            assert_eq!(u["contents"], want.contents);
        }
        assert!(!out.stdout_str().contains("null"), "no nulls in the output");
    }
}

#[test]
fn butane_mirrors_the_machineconfig() {
    for case in &CASES {
        let (name, _) = expected_config(case);
        let text = generate(case, "butane", &[]).ok().to_string();
        let b: serde_json::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(b["variant"], "openshift");
        assert_eq!(b["version"], "4.12.0");
        let mc: serde_json::Value =
            serde_norway::from_str(generate(case, "machineconfig", &[]).ok()).unwrap();
        assert_eq!(b["metadata"], mc["metadata"]);
        // Octal modes, as Butane configs are written.
        assert!(text.contains("\n    mode: 0755\n") && text.contains("\n    mode: 0644\n"));
        let files = b["storage"]["files"].as_array().unwrap();
        assert_eq!(
            util::decode_contents(&files[0]["contents"]),
            util::decode_contents(&mc["spec"]["config"]["storage"]["files"][0]["contents"])
        );
        assert_eq!(files[1]["path"], format!("/etc/kmm-day1/{name}.toml"));
        assert_eq!(
            files[1]["contents"]["inline"],
            generate(case, "config", &[]).ok()
        );
        assert_eq!(b["systemd"], mc["spec"]["config"]["systemd"]);
        let b34: serde_json::Value =
            serde_norway::from_str(generate(case, "butane", &["--ignition-version", "3.4.0"]).ok())
                .unwrap();
        assert_eq!(b34["version"], "4.14.0");
    }
}

#[test]
fn disruption_policy_names_our_files_and_units() {
    for case in &CASES {
        let (name, _) = expected_config(case);
        let p: serde_json::Value =
            serde_norway::from_str(generate(case, "disruption-policy", &[]).ok()).unwrap();
        assert_eq!(p["apiVersion"], "operator.openshift.io/v1");
        assert_eq!(p["kind"], "MachineConfiguration");
        assert_eq!(p["metadata"]["name"], "cluster");
        let policy = &p["spec"]["nodeDisruptionPolicy"];
        let none = serde_json::json!([{"type": "None"}]);
        let mut paths: Vec<&str> = Vec::new();
        for f in policy["files"].as_array().unwrap() {
            assert_eq!(f["actions"], none);
            paths.push(f["path"].as_str().unwrap());
        }
        let config_path = format!("/etc/kmm-day1/{name}.toml");
        assert_eq!(
            paths,
            [config_path.as_str(), "/usr/local/bin/kmm-day1-agent"]
        );
        let mut units: Vec<&str> = Vec::new();
        for u in policy["units"].as_array().unwrap() {
            assert_eq!(u["actions"], none);
            units.push(u["name"].as_str().unwrap());
        }
        let mut want: Vec<&str> = kmm_day1_config::units::ALL.iter().map(|u| u.name).collect();
        want.sort();
        assert_eq!(units, want);
    }
}

#[test]
fn module_cr_warnings_name_each_ignored_field() {
    let out = generate(&CASES[2], "config", &[]);
    out.ok();
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(
        warnings,
        ["warning: spec.devicePlugin is ignored: kmm-day1 only loads the module; deploy the device plugin with KMM (Day-2)"]
    );
}

#[test]
fn size_is_reported_on_one_stderr_line() {
    let out = generate(&CASES[0], "machineconfig", &[]);
    let mc_len = out.ok().len();
    assert_eq!(
        out.stderr,
        format!("kmm-day1: machineconfig output: {mc_len} bytes\n")
    );
    let out = generate(&CASES[0], "ignition", &[]);
    let line = out.stderr.trim_end();
    assert!(!line.contains('\n'));
    assert!(
        line.ends_with(&format!("the MachineConfig would be {mc_len} bytes")),
        "{line}"
    );
}

#[test]
fn flags_build_the_same_config_as_the_example() {
    // examples/sfc.toml expressed as flags.
    let out = kmm_day1(&[
        "generate",
        "--module",
        "sfc",
        "--image",
        "quay.io/acme/sfc-driver:${KERNEL_FULL_VERSION}",
        "--pool",
        "worker",
        "--agent",
        FAKE_AGENT,
    ]);
    assert_eq!(out.ok(), generate(&CASES[0], "machineconfig", &[]).ok());
}
