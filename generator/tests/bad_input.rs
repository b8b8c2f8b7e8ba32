//! Bad input: non-zero exit, nothing on stdout, exactly one stderr line that
//! names the problem.

#![allow(clippy::unwrap_used)]

mod util;

use util::{kmm_day1, FAKE_AGENT};

fn generate(args: &[&str]) -> util::Out {
    let mut all = vec!["generate", "--agent", FAKE_AGENT, "--pool", "worker"];
    all.extend_from_slice(args);
    kmm_day1(&all)
}

#[test]
fn unknown_config_key() {
    let dir = util::scratch("unknown-key");
    let f = dir.join("sfc.toml");
    std::fs::write(
        &f,
        "image = \"quay.io/a/b:1\"\nmodules = [\"sfc\"]\nimgae = \"x\"\n",
    )
    .unwrap();
    let out = generate(&["--config", f.to_str().unwrap()]);
    let line = out.one_line_error();
    assert!(
        line.contains("sfc.toml:3:1") && line.contains("unknown field `imgae`"),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_module() {
    let line = generate(&["--image", "quay.io/a/b:1"])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("no kernel module to load") && line.contains("--module"),
        "{line}"
    );
}

#[test]
fn invalid_image_reference() {
    let out = generate(&["--module", "sfc", "--image", "quay.io/Acme/sfc:1"]);
    let line = out.one_line_error();
    assert!(line.contains("command-line flags is invalid"), "{line}");
    assert!(
        line.contains("`image`") && line.contains("component `Acme`"),
        "{line}"
    );
}

#[test]
fn bad_regexp() {
    let out = generate(&[
        "--module",
        "sfc",
        "--image",
        "quay.io/a/b:1",
        "--kernel-mapping",
        "^(5\\.14=quay.io/a/b:2",
    ]);
    let line = out.one_line_error();
    assert!(line.contains("kernel_mappings[0].regexp"), "{line}");
    assert!(line.contains("not a valid regular expression"), "{line}");
}

/// Incompressible bytes, without a random number crate.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn oversize_output_is_refused_and_nothing_written() {
    let dir = util::scratch("oversize");
    let agent = dir.join("agent");
    std::fs::write(&agent, noise(2 << 20)).unwrap();
    let base = [
        "generate",
        "--config",
        "examples/sfc.toml",
        "--pool",
        "worker",
        "--agent",
        agent.to_str().unwrap(),
    ];
    let line = kmm_day1(&base).one_line_error().to_string();
    assert!(line.contains("above the 1.25 MiB"), "{line}");
    assert!(line.contains("etcd"), "{line}");
    // The same for every format that carries the agent, and -o creates nothing.
    let out_file = dir.join("mc.yaml");
    for format in ["ignition", "butane"] {
        let mut args = base.to_vec();
        args.extend_from_slice(&["--format", format, "-o", out_file.to_str().unwrap()]);
        kmm_day1(&args).one_line_error();
    }
    assert!(!out_file.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn large_output_warns_between_thresholds() {
    let dir = util::scratch("large");
    let agent = dir.join("agent");
    // ~600 KiB of noise → ~800 KiB of base64: above 768 KiB, below 1.25 MiB.
    std::fs::write(&agent, noise(600 << 10)).unwrap();
    let out = kmm_day1(&[
        "generate",
        "--config",
        "examples/sfc.toml",
        "--pool",
        "worker",
        "--agent",
        agent.to_str().unwrap(),
    ]);
    let mc = out.ok().len();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!("kmm-day1: machineconfig output: {mc} bytes")
    );
    assert!(
        lines[1].starts_with("warning: ") && lines[1].contains("rendered-worker-"),
        "{lines:?}"
    );
    assert!(lines[1].contains("wc -c"), "{lines:?}");
    assert!(lines[2].contains("oc apply --server-side"), "{lines:?}");
    assert_eq!(lines.len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsupported_kind() {
    let dir = util::scratch("kind");
    let f = dir.join("deploy.yaml");
    std::fs::write(
        &f,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n",
    )
    .unwrap();
    let line = generate(&["--from-module", f.to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("kind `Deployment` is not supported"),
        "{line}"
    );
    assert!(
        line.contains("accepted: Module (kmm.sigs.x-k8s.io/v1beta1)"),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn module_cr_raw_args_and_multiple_documents() {
    let dir = util::scratch("rawargs");
    let f = dir.join("m.yaml");
    let cr = "apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: Module\nmetadata: {name: m}\nspec:\n  selector: {}\n  moduleLoader:\n    container:\n      containerImage: q.io/a/b:1\n      modprobe:\n        moduleName: m\n        rawArgs: {load: [-d, /opt, m]}\n";
    std::fs::write(&f, cr).unwrap();
    let line = generate(&["--from-module", f.to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("modprobe.rawArgs` cannot be honoured"),
        "{line}"
    );
    std::fs::write(&f, format!("{cr}---\n{cr}")).unwrap();
    let line = generate(&["--from-module", f.to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert!(line.contains("2 YAML documents"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sample_module_without_image_is_refused() {
    // KMM's own sample has no image at all: nothing a node could pull.
    let sample = kmm_day1_tests::shared_reference("kmm-module-sample.yaml");
    let line = generate(&["--from-module", sample.to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("the node config mapped from it is invalid"),
        "{line}"
    );
    assert!(line.contains("`image`"), "{line}");
}

#[test]
fn unsupported_ignition_version() {
    let line = generate(&[
        "--config",
        "examples/sfc.toml",
        "--ignition-version",
        "3.5.0",
    ])
    .one_line_error()
    .to_string();
    assert!(
        line.contains("3.5.0") && line.contains("3.2.0") && line.contains("3.4.0"),
        "{line}"
    );
}

#[test]
fn machineconfig_needs_a_pool() {
    let out = kmm_day1(&[
        "generate",
        "--config",
        "examples/sfc.toml",
        "--agent",
        FAKE_AGENT,
    ]);
    let line = out.one_line_error();
    assert!(line.contains("--pool is required"), "{line}");
}

#[test]
fn bad_param_syntax() {
    let out = generate(&[
        "--module",
        "sfc",
        "--image",
        "q.io/a/b:1",
        "--param",
        "rss_cpus",
    ]);
    let line = out.one_line_error();
    assert!(line.contains("--param `rss_cpus`"), "{line}");
}

#[test]
fn agent_for_arch_is_embedded_or_asked_for() {
    let out = kmm_day1(&[
        "generate",
        "--config",
        "examples/sfc.toml",
        "--pool",
        "worker",
        "--arch",
        "aarch64",
        "--format",
        "ignition",
    ]);
    match option_env!("KMM_DAY1_EMBEDDED_AARCH64") {
        // Built by `make`: the embedded agent is what lands on the node
        // (or, if it is over the size budget, is refused for that reason
        // alone: agent_budget.rs reports that).
        Some(path) => {
            let file = util::read(path);
            if out.code == 0 {
                let ign: serde_json::Value = serde_json::from_str(out.stdout_str()).unwrap();
                let agent = util::decode_contents(&ign["storage"]["files"][0]["contents"]);
                assert!(agent == file, "embedded aarch64 agent differs from {path}");
            } else {
                assert!(
                    out.one_line_error().contains("above the 1.25 MiB"),
                    "{}",
                    out.stderr
                );
            }
            let version = kmm_day1(&["--version"]);
            let want = format!("aarch64 ({} bytes)", file.len());
            assert!(version.ok().contains(&want), "{}", version.stdout_str());
        }
        None => {
            let line = out.one_line_error();
            assert!(line.contains("without an embedded aarch64 agent"), "{line}");
            assert!(
                line.contains("--agent PATH") && line.contains("`make`"),
                "{line}"
            );
        }
    }
    let version = kmm_day1(&["--version"]);
    let embedded = option_env!("KMM_DAY1_EMBEDDED_X86_64").is_some();
    assert_eq!(
        version.ok().contains("x86_64 (not embedded)"),
        !embedded,
        "{}",
        version.stdout_str()
    );
}
