//! Golden outputs of every format for the three examples, and determinism.
//! `UPDATE_GOLDEN=1 cargo test -p kmm-day1 --test golden` rewrites them.

// Integration-test helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;

use kmm_day1_config::NodeConfig;
use util::{generate, kmm_day1, root, CASES, FAKE_AGENT, FORMATS, MULTI_DOC, MULTI_DOC_FORMATS};

/// `kmm-day1 generate --from-module <multi-doc example> --format <format>`.
fn generate_multi(format: &str, extra: &[&str]) -> util::Out {
    let mut args = vec![
        "generate",
        "--from-module",
        MULTI_DOC,
        "--format",
        format,
        "--agent",
        FAKE_AGENT,
    ];
    args.extend_from_slice(extra);
    kmm_day1(&args)
}

#[test]
fn every_format_matches_its_golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    let mut check = |name: String, text: &str| {
        let golden = root().join(format!("generator/tests/golden/{name}"));
        if update {
            std::fs::write(&golden, text).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", golden.display()));
        if want != text {
            mismatches.push(golden.display().to_string());
        }
    };
    for case in &CASES {
        for (format, ext) in FORMATS {
            let out = generate(case, format, &[]);
            check(format!("{}.{format}.{ext}", case.name), out.ok());
        }
    }
    for (format, ext) in MULTI_DOC_FORMATS {
        let out = generate_multi(format, &[]);
        check(format!("multi-document.{format}.{ext}"), out.ok());
    }
    assert!(
        mismatches.is_empty(),
        "outputs differ from goldens (review, then UPDATE_GOLDEN=1): {mismatches:#?}"
    );
}

/// The fake agent file is the program `util::fake_agent_bytes` assembles.
#[test]
fn fake_agent_is_the_assembled_program() {
    let path = root().join(FAKE_AGENT);
    let want = util::fake_agent_bytes();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
    }
    assert!(
        util::read(path.to_str().unwrap()) == want,
        "{} differs from util::fake_agent_bytes (UPDATE_GOLDEN=1)",
        path.display()
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
}

/// The node config of a case, as the example file defines it.
fn expected_config(case: &util::Case) -> (String, NodeConfig) {
    let out = generate(case, "config", &[]);
    let name = case.config_name.to_string();
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
        let pool = case.pool;
        assert_eq!(mc["metadata"]["name"], case.mc_name);
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
    let warnings = out.warnings();
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

/// The documents of the multi-document example, each as its own file.
fn split_multi_doc(dir: &Path) -> Vec<std::path::PathBuf> {
    let text = std::fs::read_to_string(root().join(MULTI_DOC)).unwrap();
    let docs: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(docs.len(), 2, "the example has two documents");
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let f = dir.join(format!("doc{i}.yaml"));
            std::fs::write(&f, d).unwrap();
            f
        })
        .collect()
}

#[test]
fn multi_document_output_is_each_document_alone_joined() {
    let dir = util::scratch("multi-doc");
    let parts = split_multi_doc(&dir);
    for format in ["machineconfig", "butane"] {
        let all = generate_multi(format, &[]);
        let alone: Vec<String> = parts
            .iter()
            .map(|p| {
                kmm_day1(&[
                    "generate",
                    "--from-module",
                    p.to_str().unwrap(),
                    "--format",
                    format,
                    "--agent",
                    FAKE_AGENT,
                ])
                .ok()
                .to_string()
            })
            .collect();
        assert_eq!(all.ok(), alone.join("---\n"), "{format}");
        // A YAML stream of two objects, as `oc create -f -` reads it.
        let docs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(all.ok())
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2, "{format}");
        assert_eq!(docs[0]["metadata"]["name"], "99-worker-ice-day1");
        assert_eq!(
            docs[1]["metadata"]["name"],
            "99-gpu-worker-kmm-day1-mlx5-gpu"
        );
        assert_eq!(
            docs[1]["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
            "gpu-worker"
        );
    }
    // The disruption policy is cluster-wide: one object naming both configs.
    let p: serde_json::Value =
        serde_norway::from_str(generate_multi("disruption-policy", &[]).ok()).unwrap();
    let paths: Vec<&str> = p["spec"]["nodeDisruptionPolicy"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/etc/kmm-day1/ice-day1.toml",
            "/etc/kmm-day1/mlx5-gpu.toml",
            "/usr/local/bin/kmm-day1-agent"
        ]
    );
    // -o writes the whole stream.
    let f = dir.join("out.yaml");
    let c = generate_multi("machineconfig", &["-o", f.to_str().unwrap()]);
    assert!(c.ok().is_empty());
    assert_eq!(
        std::fs::read(&f).unwrap(),
        generate_multi("machineconfig", &[]).stdout
    );
}

#[test]
fn multi_document_refusals_for_single_config_formats_and_flags() {
    for format in ["ignition", "config"] {
        let line = generate_multi(format, &[]).one_line_error().to_string();
        assert!(
            line.contains(&format!(
                "--format {format} writes one config, but the input has 2 objects"
            )),
            "{line}"
        );
    }
    for (flag, val) in [("--name", "x"), ("--mc-name", "x")] {
        let line = generate_multi("machineconfig", &[flag, val])
            .one_line_error()
            .to_string();
        assert!(line.contains(flag) && line.contains("2 objects"), "{line}");
    }
}

#[test]
fn bootmoduleconfig_names_its_machineconfig_and_pool_and_warns_about_worker_image() {
    let case = &CASES[3];
    let out = generate(case, "machineconfig", &[]);
    let mc: serde_json::Value = serde_norway::from_str(out.ok()).unwrap();
    assert_eq!(mc["metadata"]["name"], "99-worker-sfc-day1");
    let warnings = out.warnings();
    assert_eq!(
        warnings,
        ["warning: spec.workerImage is ignored: the kmm-day1 agent pulls and loads the module itself; there is no KMM worker container at boot"]
    );
    let (_, cfg) = expected_config(case);
    // KMM's tag convention: the node's kernel release.
    assert_eq!(
        cfg.image.as_deref(),
        Some("quay.io/acme/sfc-driver:${KERNEL_FULL_VERSION}")
    );
    assert_eq!(cfg.modules, ["sfc"]);
    assert_eq!(cfg.in_tree_remove.as_deref().unwrap(), ["sfc", "mdio"]);
    assert_eq!(cfg.firmware_dir.as_deref(), Some("/firmware"));
    let r = cfg
        .resolve("sfc-day1", "5.14.0-427.13.1.el9_4.x86_64")
        .unwrap()
        .unwrap();
    assert_eq!(
        r.reference,
        "quay.io/acme/sfc-driver:5.14.0-427.13.1.el9_4.x86_64"
    );
    // --pool and --mc-name still win, with a warning naming the CR's field.
    let out = generate(
        case,
        "machineconfig",
        &["--pool", "infra", "--mc-name", "99-infra-sfc"],
    );
    let mc: serde_json::Value = serde_norway::from_str(out.ok()).unwrap();
    assert_eq!(mc["metadata"]["name"], "99-infra-sfc");
    assert_eq!(
        mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "infra"
    );
    assert!(out.stderr.contains("warning: --pool infra differs from the BootModuleConfig's machineConfigPoolName `worker`"), "{}", out.stderr);
    assert!(out.stderr.contains("warning: --mc-name 99-infra-sfc differs from the BootModuleConfig's machineConfigName `99-worker-sfc-day1`"), "{}", out.stderr);
}

/// KMM's day1-utility options, with `--` for Go's `-`, build the same
/// MachineConfig as the equivalent BootModuleConfig.
#[test]
fn day1_utility_option_names_are_aliases() {
    let day1 = [
        "--machine-config",
        "99-worker-sfc-day1",
        "--machine-config-pool",
        "worker",
        "--image",
        "quay.io/acme/sfc-driver",
        "--kernel-module",
        "sfc",
        "--in-tree-modules-to-remove",
        "sfc,mdio",
        "--firmware-files-path",
        "/firmware",
        "--worker-image",
        "quay.io/edge-infrastructure/kernel-module-management-worker:latest",
        "--name",
        "sfc-day1",
    ];
    let bmc = generate(&CASES[3], "machineconfig", &[]);
    for verb in ["generate", "machineconfig"] {
        let mut args = vec![verb, "--agent", FAKE_AGENT];
        args.extend_from_slice(&day1);
        let out = kmm_day1(&args);
        assert_eq!(out.ok(), bmc.ok(), "{verb}");
        // The tag rule and the ignored worker image are both said.
        assert!(out.stderr.contains("warning: --image `quay.io/acme/sfc-driver` has no tag: using `quay.io/acme/sfc-driver:${KERNEL_FULL_VERSION}`"), "{}", out.stderr);
        assert!(
            out.stderr.contains("warning: --worker-image is ignored"),
            "{}",
            out.stderr
        );
    }
    // `=` works as with Go's flag package; "" means remove nothing, as
    // day1-utility's strings.Split("", ",") leaves nothing to remove.
    let out = kmm_day1(&[
        "generate",
        "--format",
        "config",
        "--kernel-module=sfc",
        "--image=quay.io/acme/sfc-driver",
        "--in-tree-modules-to-remove=",
    ]);
    let cfg = NodeConfig::parse(Path::new("sfc.toml"), out.ok()).unwrap();
    assert_eq!(cfg.in_tree_remove, Some(Vec::new()));
    // A tagged --image is taken as is (day1-utility would append a second tag).
    let out = kmm_day1(&[
        "generate",
        "--format",
        "config",
        "--kernel-module",
        "sfc",
        "--image",
        "quay.io/acme/sfc-driver:1.2",
    ]);
    let cfg = NodeConfig::parse(Path::new("sfc.toml"), out.ok()).unwrap();
    assert_eq!(cfg.image.as_deref(), Some("quay.io/acme/sfc-driver:1.2"));
    assert!(!out.stderr.contains("has no tag"), "{}", out.stderr);
}

#[test]
fn machineconfig_verb_refuses_other_formats() {
    let line = kmm_day1(&[
        "machineconfig",
        "--config",
        "examples/sfc.toml",
        "--format",
        "butane",
    ])
    .one_line_error()
    .to_string();
    assert!(line.contains("use `generate --format butane`"), "{line}");
}

/// What `oc get bmc,module -o yaml` prints: a `List` whose items carry the
/// server's metadata and status. It gives the same MachineConfigs as the
/// same objects in a `---` stream; an error names the item.
#[test]
fn a_list_from_oc_get_is_its_items() {
    let dir = util::scratch("list");
    let text = std::fs::read_to_string(root().join(MULTI_DOC)).unwrap();
    let items: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .map(|mut v: serde_json::Value| {
            let m = v["metadata"].as_object_mut().unwrap();
            m.insert("uid".into(), "0b4c7c3e-1111-2222-3333-444455556666".into());
            m.insert("resourceVersion".into(), "12345".into());
            m.insert("generation".into(), 1.into());
            m.insert(
                "managedFields".into(),
                serde_json::json!([{"manager": "oc"}]),
            );
            v["status"] = serde_json::json!({"configStatus": "done"});
            v
        })
        .collect();
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": items,
    });
    let f = dir.join("list.yaml");
    std::fs::write(&f, serde_norway::to_string(&list).unwrap()).unwrap();
    let out = kmm_day1(&[
        "generate",
        "--from-module",
        f.to_str().unwrap(),
        "--agent",
        FAKE_AGENT,
    ]);
    assert_eq!(out.ok(), generate_multi("machineconfig", &[]).ok());
    // The second item broken: the error says which.
    let mut broken = list.clone();
    broken["items"][1]["kind"] = "Deployment".into();
    std::fs::write(&f, serde_norway::to_string(&broken).unwrap()).unwrap();
    let line = kmm_day1(&[
        "generate",
        "--from-module",
        f.to_str().unwrap(),
        "--agent",
        FAKE_AGENT,
    ])
    .one_line_error()
    .to_string();
    assert!(
        line.contains("list.yaml: items[1]: kind `Deployment` is not supported"),
        "{line}"
    );
}
