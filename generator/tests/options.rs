//! Flags and naming options, end to end through the binary.

#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;

use kmm_day1_config::{AfterPull, NodeConfig};
use util::{generate_sfc, kmm_day1, FAKE_AGENT};

fn config_from(args: &[&str], name: &str) -> NodeConfig {
    let mut all = vec!["generate", "--format", "config"];
    all.extend_from_slice(args);
    let out = kmm_day1(&all);
    NodeConfig::parse(Path::new(&format!("{name}.toml")), out.ok()).unwrap()
}

#[test]
fn every_node_config_flag_lands_in_the_config() {
    let c = config_from(
        &[
            "--module",
            "ice",
            "--module",
            "irdma",
            "--image",
            "q.io/acme/ice:${KERNEL_FULL_VERSION}",
            "--in-tree-remove",
            "irdma",
            "--in-tree-remove",
            "ice",
            "--param",
            "irdma=roce_ena=1",
            "--param",
            "irdma=limits_sel=4",
            "--param",
            "ice=debug",
            "--firmware-dir",
            "/firmware",
            "--module-root",
            "/opt/alt",
            "--kernel-mapping",
            "^6\\.1\\..*$=q.io/acme/ice:deb",
            "--kernel-mapping-literal",
            "5.14.0-427.13.1.el9_4.x86_64=q.io/acme/ice:el9_4",
            "--mod-namespace",
            "drivers",
            "--after-pull",
            "live",
            "--insecure-skip-tls-verify",
            "--auth-file",
            "/etc/kmm-day1/auth.json",
            "--ca-dir",
            "/etc/kmm-day1/ca",
            "--max-reboots",
            "1",
        ],
        "ice",
    );
    assert_eq!(c.modules, ["ice", "irdma"]);
    assert_eq!(
        c.image.as_deref(),
        Some("q.io/acme/ice:${KERNEL_FULL_VERSION}")
    );
    assert_eq!(c.in_tree_remove.unwrap(), ["irdma", "ice"]);
    assert_eq!(c.parameters["irdma"], ["roce_ena=1", "limits_sel=4"]);
    assert_eq!(c.parameters["ice"], ["debug"]);
    assert_eq!(c.firmware_dir.as_deref(), Some("/firmware"));
    assert_eq!(c.module_root, "/opt/alt");
    // Literal mappings come first, whatever the flag order.
    assert_eq!(
        c.kernel_mappings[0].literal.as_deref(),
        Some("5.14.0-427.13.1.el9_4.x86_64")
    );
    assert_eq!(
        c.kernel_mappings[0].image.as_deref(),
        Some("q.io/acme/ice:el9_4")
    );
    assert_eq!(c.kernel_mappings[1].regexp.as_deref(), Some("^6\\.1\\..*$"));
    assert_eq!(c.mod_namespace.as_deref(), Some("drivers"));
    assert_eq!(c.pull.after_pull, AfterPull::Live);
    assert!(c.pull.insecure_skip_tls_verify && !c.pull.insecure);
    assert_eq!(c.pull.auth_files, ["/etc/kmm-day1/auth.json"]);
    assert_eq!(c.pull.ca_dir.as_deref(), Some("/etc/kmm-day1/ca"));
    assert_eq!(c.pull.max_reboots_per_kernel, 1);
}

#[test]
fn pull_flags_apply_on_top_of_a_module_cr() {
    let c = config_from(
        &[
            "--from-module",
            "examples/module-cr.yaml",
            "--after-pull",
            "none",
            "--insecure",
        ],
        "mlx5-oot",
    );
    assert_eq!(c.pull.after_pull, AfterPull::None);
    assert!(c.pull.insecure);
    assert_eq!(c.modules, ["mlx5_core", "mlx5_ib"]);
}

#[test]
fn content_flags_conflict_with_ready_inputs() {
    for input in [
        ["--config", "examples/sfc.toml"],
        ["--from-module", "examples/module-cr.yaml"],
    ] {
        let out = kmm_day1(&[
            "generate", input[0], input[1], "--module", "x", "--format", "config",
        ]);
        assert_eq!(out.code, 2, "clap usage error: {}", out.stderr);
        assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    }
    let out = kmm_day1(&[
        "generate",
        "--config",
        "examples/sfc.toml",
        "--after-pull",
        "live",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn names_pools_and_versions() {
    let mc = |extra: &[&str]| -> serde_json::Value {
        serde_norway::from_str(generate_sfc(extra).ok()).unwrap()
    };
    let m = mc(&["--pool", "infra", "--name", "sfc-oot"]);
    assert_eq!(m["metadata"]["name"], "99-infra-kmm-day1-sfc-oot");
    assert_eq!(
        m["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "infra"
    );
    assert_eq!(
        m["spec"]["config"]["storage"]["files"][1]["path"],
        "/etc/kmm-day1/sfc-oot.toml"
    );
    let m = mc(&[
        "--pool",
        "worker",
        "--mc-name",
        "50-sfc",
        "--ignition-version",
        "3.4.0",
    ]);
    assert_eq!(m["metadata"]["name"], "50-sfc");
    assert_eq!(m["spec"]["config"]["ignition"]["version"], "3.4.0");
    // The pool from the CR's selector, overridden by --pool with a warning.
    let out = kmm_day1(&[
        "generate",
        "--from-module",
        "examples/module-cr.yaml",
        "--agent",
        FAKE_AGENT,
        "--pool",
        "infra",
    ]);
    let m: serde_json::Value = serde_norway::from_str(out.ok()).unwrap();
    assert_eq!(
        m["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "infra"
    );
    assert!(
        out.stderr
            .contains("warning: --pool infra differs from the Module's selector role `worker`"),
        "{}",
        out.stderr
    );
    // A name that cannot be a Kubernetes name asks for --mc-name.
    let out = generate_sfc(&["--pool", "worker", "--name", "SFC_1"]);
    let line = out.one_line_error();
    assert!(
        line.contains("`99-worker-kmm-day1-SFC_1`") && line.contains("--mc-name"),
        "{line}"
    );
}

/// `--no-compress` could never produce a MachineConfig that fits, so it is
/// gone: still recognised, to say why and what to do, and not in --help.
#[test]
fn no_compress_is_refused_with_the_reason() {
    let out = generate_sfc(&["--format", "ignition", "--no-compress"]);
    let line = out.one_line_error();
    assert!(
        line.starts_with("error: --no-compress was removed: it could never succeed")
            && line.ends_with("drop the flag"),
        "{line}"
    );
    let help = kmm_day1(&["generate", "--help"]);
    assert!(!help.ok().contains("no-compress"), "hidden from --help");
}

#[test]
fn unwritable_output_is_one_line() {
    let out = kmm_day1(&[
        "generate",
        "--config",
        "examples/sfc.toml",
        "--format",
        "config",
        "-o",
        "/nonexistent-dir/x.toml",
    ]);
    let line = out.one_line_error();
    assert!(
        line.contains("cannot write /nonexistent-dir/x.toml"),
        "{line}"
    );
}

/// `--explain-kernel` says which mapping and image a kernel gets, for each
/// config, as the node would resolve it (checked against the node config
/// the same input generates), needs no --pool and writes nothing else.
#[test]
fn explain_kernel_names_the_mapping_and_image() {
    let example = ["--from-module", "examples/module-cr.yaml"];
    let config = config_from(&example, "mlx5-oot");
    for release in [
        "5.14.0-427.13.1.el9_4.x86_64",
        "5.14.0-284.59.1.el9_2.x86_64",
        "6.1.0-18-amd64",
    ] {
        let out = kmm_day1(&[&["generate"][..], &example, &["--explain-kernel", release]].concat());
        let line = out.ok().strip_suffix('\n').unwrap();
        assert!(!line.contains('\n'), "one line per config: {line}");
        let head = format!("mlx5-oot: kernel {release}: ");
        assert!(line.starts_with(&head), "{line}");
        match config.mapping_for(release) {
            Some((i, _)) => {
                let r = config.resolve("mlx5-oot", release).unwrap().unwrap();
                assert!(line.contains(&format!("kernel_mappings[{i}] (")), "{line}");
                assert!(line.contains(&format!(": image {}; ", r.reference)), "{line}");
                assert!(line.ends_with(&r.in_tree_remove.join(", ")), "{line}");
            }
            None => assert_eq!(
                line,
                format!("{head}no kernel mapping matches: nothing is loaded on this kernel (as KMM: no mapping, no module)")
            ),
        }
    }
    // Both mappings and the no-match case were exercised.
    assert_eq!(
        config
            .mapping_for("5.14.0-284.59.1.el9_2.x86_64")
            .unwrap()
            .0,
        1
    );
    assert_eq!(
        config
            .mapping_for("5.14.0-427.13.1.el9_4.x86_64")
            .unwrap()
            .0,
        0
    );
    // Without mappings: the top-level image, with the kernel as its tag.
    let out = kmm_day1(&[
        "generate",
        "--config",
        "examples/sfc.toml",
        "--explain-kernel",
        "6.1.0-18-amd64",
    ]);
    assert_eq!(
        out.ok(),
        "sfc: kernel 6.1.0-18-amd64: the top-level image (no kernel_mappings): image quay.io/acme/sfc-driver:6.1.0-18-amd64; removes in-tree sfc\n"
    );
    // A release uname -r could not print is the usual one-line error.
    let out = kmm_day1(&[
        "generate",
        "--config",
        "examples/sfc.toml",
        "--explain-kernel",
        "6.1",
    ]);
    assert!(
        out.code != 0
            && out
                .stderr
                .contains("--explain-kernel 6.1 (config `sfc`): kernel release `6.1` is invalid"),
        "{out:?}"
    );
    // Every config of a stream gets its line.
    let out = kmm_day1(&[
        "generate",
        "--from-module",
        util::MULTI_DOC,
        "--explain-kernel",
        "6.1.0-18-amd64",
    ]);
    assert_eq!(out.ok().lines().count(), 2, "{}", out.stdout_str());
}

/// One rule for an image without a tag, per kind of input: on the command
/// line (`--image` and both mapping flags) it gets the kernel release as its
/// tag with a warning naming the flag, as KMM's day1-utility does; in a node
/// config file or a Module CR it is an error that says what to write.
#[test]
fn untagged_images_follow_one_rule_per_input_kind() {
    let out = kmm_day1(&[
        "generate",
        "--format",
        "config",
        "--module",
        "sfc",
        "--image",
        "quay.io/a/b",
        "--kernel-mapping",
        "^.+\\.el9_4\\..+$=quay.io/a/c",
        "--kernel-mapping-literal",
        "6.1.0-18-amd64=quay.io/a/d",
    ]);
    let c = NodeConfig::parse(Path::new("sfc.toml"), out.ok()).unwrap();
    let k = "${KERNEL_FULL_VERSION}";
    assert_eq!(
        c.image.as_deref(),
        Some(format!("quay.io/a/b:{k}").as_str())
    );
    let images: Vec<_> = c
        .kernel_mappings
        .iter()
        .map(|m| m.image.clone().unwrap())
        .collect();
    assert_eq!(
        images,
        [format!("quay.io/a/d:{k}"), format!("quay.io/a/c:{k}")]
    );
    for what in [
        "--image `quay.io/a/b`",
        "the image of --kernel-mapping `^.+\\.el9_4\\..+$=quay.io/a/c`",
        "the image of --kernel-mapping-literal `6.1.0-18-amd64=quay.io/a/d`",
    ] {
        assert!(
            out.stderr
                .contains(&format!("warning: {what} has no tag: using `")),
            "{what}: {}",
            out.stderr
        );
    }
    let dir = util::scratch("untagged");
    let toml = dir.join("sfc.toml");
    std::fs::write(&toml, "image = \"quay.io/a/b\"\nmodules = [\"sfc\"]\n").unwrap();
    let module = dir.join("m.yaml");
    std::fs::write(
        &module,
        std::fs::read_to_string(util::root().join("examples/module-cr.yaml"))
            .unwrap()
            .replace(
                "quay.io/acme/${MOD_NAME}:${KERNEL_FULL_VERSION}",
                "quay.io/acme/mlx5",
            ),
    )
    .unwrap();
    for input in [
        ["--config", toml.to_str().unwrap()],
        ["--from-module", module.to_str().unwrap()],
    ] {
        let out = kmm_day1(&[&["generate", "--format", "config"][..], &input].concat());
        assert!(out.code != 0 && out.stdout.is_empty(), "{input:?}: {out:?}");
        assert!(
            out.stderr.contains(
                "has neither a tag nor a digest; name one (e.g. `:${KERNEL_FULL_VERSION}`"
            ),
            "{input:?}: {}",
            out.stderr
        );
    }
}
