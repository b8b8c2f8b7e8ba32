//! Bad input: non-zero exit, nothing on stdout, exactly one stderr line that
//! names the problem.

#![allow(clippy::unwrap_used)]

mod util;

use util::{generate_sfc, kmm_day1, FAKE_AGENT};

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
    std::fs::write(&agent, util::agent_with(&noise(2 << 20))).unwrap();
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
}

#[test]
fn large_output_warns_between_thresholds() {
    let dir = util::scratch("large");
    let agent = dir.join("agent");
    // ~600 KiB of noise → ~800 KiB of base64: above 768 KiB, below 1.25 MiB.
    std::fs::write(&agent, util::agent_with(&noise(600 << 10))).unwrap();
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
    assert!(lines[1].contains("--rendered -"), "{lines:?}");
    assert!(lines[2].contains("oc apply --server-side"), "{lines:?}");
    assert_eq!(lines.len(), 3);
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
        line.contains("accepted: Module or BootModuleConfig (kmm.sigs.x-k8s.io/v1beta1)"),
        "{line}"
    );
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
    // In a stream, the error names the document.
    let good = cr.replace("        rawArgs: {load: [-d, /opt, m]}\n", "");
    std::fs::write(&f, format!("{good}---\n{cr}")).unwrap();
    let line = generate(&["--from-module", f.to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("m.yaml: document 2 of 2: `spec.moduleLoader.container.modprobe.rawArgs` cannot be honoured"),
        "{line}"
    );
}

const BMC: &str = "apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: BootModuleConfig\nmetadata: {name: b}\nspec:\n  machineConfigName: 99-worker-b\n  machineConfigPoolName: worker\n  kernelModuleImage: quay.io/a/b\n  kernelModuleName: b\n";

/// `generate --from-module <text>` without --pool (the CR names it).
fn from_module_text(test: &str, text: &str) -> util::Out {
    let dir = util::scratch(test);
    let f = dir.join("in.yaml");
    std::fs::write(&f, text).unwrap();
    let out = kmm_day1(&[
        "generate",
        "--agent",
        FAKE_AGENT,
        "--from-module",
        f.to_str().unwrap(),
    ]);
    out
}

#[test]
fn bootmoduleconfig_missing_pool() {
    let text = BMC.replace("  machineConfigPoolName: worker\n", "");
    let line = from_module_text("bmc-no-pool", &text)
        .one_line_error()
        .to_string();
    assert!(
        line.contains(
            "in.yaml: `spec.machineConfigPoolName` is missing: it names the MachineConfigPool"
        ),
        "{line}"
    );
}

#[test]
fn bootmoduleconfig_image_with_a_tag_or_digest() {
    for (image, says) in [
        ("quay.io/a/b:5.14", "already has a tag `5.14`"),
        ("quay.io/a/b@sha256:0123", "has a digest (`@sha256:0123`)"),
    ] {
        let text = BMC.replace("quay.io/a/b\n", &format!("{image}\n"));
        let line = from_module_text("bmc-tag", &text)
            .one_line_error()
            .to_string();
        assert!(line.contains("`spec.kernelModuleImage`: "), "{line}");
        assert!(
            line.contains(says) && line.contains("KMM appends `:<kernel release>`"),
            "{line}"
        );
    }
}

#[test]
fn unknown_kind_in_a_stream_names_the_document() {
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n";
    // A leading `---` and a comment-only document are not counted.
    let text = format!("---\n{BMC}---\n# nothing\n---\n{deploy}");
    let line = from_module_text("stream-kind", &text)
        .one_line_error()
        .to_string();
    assert!(
        line.contains("in.yaml: document 2 of 2: kind `Deployment` is not supported; accepted: Module or BootModuleConfig"),
        "{line}"
    );
}

#[test]
fn duplicate_names_in_a_stream() {
    let line = from_module_text("stream-dup", &format!("{BMC}---\n{BMC}"))
        .one_line_error()
        .to_string();
    assert!(
        line.contains("two objects map to the config name `b`"),
        "{line}"
    );
    let other = BMC.replace("{name: b}", "{name: c}");
    let line = from_module_text("stream-dup-mc", &format!("{BMC}---\n{other}"))
        .one_line_error()
        .to_string();
    assert!(
        line.contains("two objects map to the MachineConfig name `99-worker-b`"),
        "{line}"
    );
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
    let out = generate_sfc(&[]);
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

/// `--name` becomes `/etc/kmm-day1/<NAME>.toml`, which the agent reads only
/// as one file name: a `/`, a `..` or a leading `.` is refused for every
/// input kind and every output format, before anything is written.
#[test]
fn name_must_be_one_file_name_in_every_format() {
    let inputs: [&[&str]; 3] = [
        &["--module", "sfc", "--image", "quay.io/a/b:1"],
        &["--config", "examples/sfc.toml"],
        &["--from-module", "examples/module-cr.yaml"],
    ];
    for bad in ["intel/ice", "../../etc/passwd", ".hidden", "a b", ""] {
        for input in inputs {
            for (format, _) in util::FORMATS {
                let mut args = input.to_vec();
                args.extend_from_slice(&["--format", format, "--name", bad]);
                let out = generate(&args);
                let line = out.one_line_error();
                assert!(
                    line.contains(&format!("--name `{bad}` is not a valid config name"))
                        && line.contains("/etc/kmm-day1/<NAME>.toml"),
                    "{bad} {input:?} {format}: {line}"
                );
            }
        }
    }
    // The example in the message is itself accepted.
    let out = generate(&["--config", "examples/sfc.toml", "--name", "intel/ice"]);
    let hint = out.one_line_error().rsplit("--name ").next().unwrap();
    assert_eq!(hint, "intel-ice");
    generate(&[
        "--config",
        "examples/sfc.toml",
        "--format",
        "config",
        "--name",
        hint,
    ])
    .ok();
}

/// A role no pool selects (`Worker`) is refused where it is given, with the
/// lowercase role to use, and `--mc-name` (the old error's advice) does not
/// make it pass: `role: Worker` would reach no node.
#[test]
fn pool_role_must_be_lowercase_wherever_it_comes_from() {
    for extra in [&[][..], &["--mc-name", "99-worker-sfc"][..]] {
        let mut args = vec!["--config", "examples/sfc.toml", "--pool", "Worker"];
        args.extend_from_slice(extra);
        let out = kmm_day1(&[&["generate", "--agent", FAKE_AGENT][..], &args[..]].concat());
        let line = out.one_line_error();
        assert!(
            line.contains("--pool `Worker` is not a pool role")
                && line.ends_with("use `worker`")
                && !line.contains("--mc-name"),
            "{extra:?}: {line}"
        );
    }
    let dir = util::scratch("pool-case");
    let module = std::fs::read_to_string(util::root().join("examples/module-cr.yaml"))
        .unwrap()
        .replace(
            "node-role.kubernetes.io/worker",
            "node-role.kubernetes.io/Worker",
        );
    assert!(module.contains("/Worker"), "the example selects a role");
    let m = dir.join("module.yaml");
    std::fs::write(&m, module).unwrap();
    let out = kmm_day1(&[
        "generate",
        "--agent",
        FAKE_AGENT,
        "--from-module",
        m.to_str().unwrap(),
    ]);
    // The example's devicePlugin warning comes first.
    assert!(out.code != 0 && out.stdout.is_empty(), "{out:?}");
    let line = out.stderr.lines().last().unwrap();
    assert!(
        line.starts_with("error: the Module's selector role `Worker` is not"),
        "{line}"
    );
    let bmc = std::fs::read_to_string(util::root().join("examples/bootmoduleconfig.yaml"))
        .unwrap()
        .replace(
            "machineConfigPoolName: worker",
            "machineConfigPoolName: Worker",
        );
    assert!(bmc.contains(": Worker"), "the example names its pool");
    let b = dir.join("bmc.yaml");
    std::fs::write(&b, bmc).unwrap();
    let out = kmm_day1(&[
        "generate",
        "--agent",
        FAKE_AGENT,
        "--from-module",
        b.to_str().unwrap(),
    ]);
    let line = out.one_line_error();
    assert!(
        line.contains("`spec.machineConfigPoolName` `Worker`"),
        "{line}"
    );
}

/// A field the KMM CRD does not define is a typo the API server would
/// reject; ignoring it would drop mappings or modules. Each is an error
/// naming the field and the one meant; fields the CRD defines but a
/// MachineConfig cannot honour stay warnings.
#[test]
fn kmm_cr_fields_outside_the_crd_are_errors_with_a_suggestion() {
    let dir = util::scratch("crd-typos");
    let module = std::fs::read_to_string(util::root().join("examples/module-cr.yaml")).unwrap();
    let bmc = std::fs::read_to_string(util::root().join("examples/bootmoduleconfig.yaml")).unwrap();
    let cases = [
        (
            module.replace("      kernelMappings:\n", "      kernelMapping:\n"),
            "`spec.moduleLoader.container.kernelMapping` is not a field of a Module",
            "did you mean `kernelMappings`?",
        ),
        (
            module.replace("        modulesLoadingOrder:\n", "        moduleLoadingOrder:\n"),
            "`spec.moduleLoader.container.modprobe.moduleLoadingOrder` is not a field of a Module",
            "did you mean `modulesLoadingOrder`?",
        ),
        (
            module.replace("        - literal: ", "        - literl: "),
            "`spec.moduleLoader.container.kernelMappings[1].literl` is not a field of a Module",
            "did you mean `literal`?",
        ),
        (
            module.replace("            insecureSkipTLSVerify", "            insecureSkipTlsVerify"),
            "`spec.moduleLoader.container.kernelMappings[1].registryTLS.insecureSkipTlsVerify` is not a field",
            "did you mean `insecureSkipTLSVerify`?",
        ),
        (
            module.replace("  devicePlugin:\n", "  devicePlugins:\n"),
            "`spec.devicePlugins` is not a field of a Module",
            "did you mean `devicePlugin`?",
        ),
        (
            bmc.replace("  kernelModuleName:", "  inTreeModuleToRemove: sfc\n  kernelModuleName:"),
            "`spec.inTreeModuleToRemove` is not a field of a BootModuleConfig",
            "did you mean `inTreeModulesToRemove`?",
        ),
    ];
    for (i, (yaml, names, hint)) in cases.iter().enumerate() {
        let f = dir.join(format!("{i}.yaml"));
        std::fs::write(&f, yaml).unwrap();
        let out = generate(&["--from-module", f.to_str().unwrap()]);
        let line = out.one_line_error();
        assert!(line.contains(names) && line.ends_with(hint), "{i}: {line}");
    }
    // Defined by the CRD, not honoured at first boot: a warning, exit 0.
    let f = dir.join("tolerations.yaml");
    std::fs::write(
        &f,
        module.replace(
            "  devicePlugin:\n",
            "  tolerations: [{key: a}]\n  devicePlugin:\n",
        ),
    )
    .unwrap();
    let out = generate(&["--from-module", f.to_str().unwrap(), "--format", "config"]);
    out.ok();
    assert!(
        out.stderr
            .contains("warning: spec.tolerations is ignored: "),
        "{}",
        out.stderr
    );
}

/// `--agent` must be what the node can run first thing: a static ELF
/// executable for `--arch` (the rule tests/agent_static.rs applies to the
/// build's agents, from the same file). Each other kind of file is one
/// line naming the file and what is wrong with it.
#[test]
fn agent_must_be_a_static_executable_for_arch() {
    let dir = util::scratch("agent-kind");
    let fake = util::fake_agent_bytes();
    let mut aarch64 = fake.clone();
    aarch64[18] = 183;
    let mut pie = fake.clone();
    pie[16] = 3;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "script",
            b"#!/bin/sh\nexec true\n".to_vec(),
            "it is not an ELF file",
        ),
        ("noise", noise(4096), "it is not an ELF file"),
        ("aarch64", aarch64, "it is for aarch64, not x86_64"),
        ("pie", pie, "ET_DYN"),
        ("truncated", fake[..40].to_vec(), "truncated"),
    ];
    let mut paths: Vec<(String, String)> = cases
        .into_iter()
        .map(|(name, bytes, why)| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            (p.display().to_string(), why.to_string())
        })
        .collect();
    // A real dynamically linked executable, as the issue found.
    if std::fs::read("/bin/true").is_ok_and(|b| b.get(18) == Some(&62)) {
        paths.push(("/bin/true".into(), "dynamically linked".into()));
    }
    for (path, why) in &paths {
        for format in ["machineconfig", "ignition", "butane"] {
            let out = kmm_day1(&[
                "generate",
                "--config",
                "examples/sfc.toml",
                "--pool",
                "worker",
                "--format",
                format,
                "--agent",
                path,
            ]);
            let line = out.one_line_error();
            assert!(
                line.contains(&format!(
                    "--agent {path} is not a static ELF executable for --arch x86_64: "
                )) && line.contains(why.as_str()),
                "{path} {format}: {line}"
            );
        }
    }
    // The fake agent passes for x86_64 and is refused for aarch64.
    let line = kmm_day1(&[
        "generate",
        "--config",
        "examples/sfc.toml",
        "--pool",
        "worker",
        "--arch",
        "aarch64",
        "--agent",
        FAKE_AGENT,
    ])
    .one_line_error()
    .to_string();
    assert!(line.contains("it is for x86_64, not aarch64"), "{line}");
    generate(&["--config", "examples/sfc.toml"]).ok();
}

/// Mappings that can never apply are refused, from flags, a config file
/// or a Module CR alike; a literal for another architecture is a warning.
#[test]
fn mappings_that_can_never_match() {
    let base = [
        "--module",
        "sfc",
        "--image",
        "quay.io/a/b:1",
        "--format",
        "config",
    ];
    let cases: [(&[&str], &str); 4] = [
        (
            &["--kernel-mapping-literal", "5.14.0-427.13.1.el9_4.x86_64 =quay.io/a/b:2"],
            "kernel_mappings[0].literal `5.14.0-427.13.1.el9_4.x86_64 ` has leading or trailing whitespace",
        ),
        (
            &["--kernel-mapping-literal", "6.1.0-18-amd64=quay.io/a/b:2", "--kernel-mapping-literal", "6.1.0-18-amd64=quay.io/a/b:3"],
            "kernel_mappings[1] (literal `6.1.0-18-amd64`) can never apply: kernel_mappings[0] (literal `6.1.0-18-amd64`) comes first",
        ),
        (
            &["--kernel-mapping", "^.+$=quay.io/a/b:2", "--kernel-mapping", "el9=quay.io/a/b:3"],
            "kernel_mappings[1] (regexp `el9`) can never apply: kernel_mappings[0] (regexp `^.+$`) comes first, first match wins, and `^.+$` matches every kernel release",
        ),
        (
            &["--kernel-mapping", "el9=quay.io/a/b:2", "--kernel-mapping", "el9=quay.io/a/b:3"],
            "kernel_mappings[1] (regexp `el9`) can never apply",
        ),
    ];
    for (extra, want) in cases {
        let out = generate(&[&base[..], extra].concat());
        let line = out.one_line_error();
        assert!(line.contains(want), "{extra:?}: {line}");
    }
    // The same check reads a Module CR's kernelMappings.
    let dir = util::scratch("dead-mappings");
    let module = std::fs::read_to_string(util::root().join("examples/module-cr.yaml"))
        .unwrap()
        .replace(
            "        - literal: 5.14.0-284.59.1.el9_2.x86_64\n",
            "        - literal: ' 5.14.0-284.59.1.el9_2.x86_64'\n",
        );
    assert!(
        module.contains("' 5.14"),
        "the example has a literal mapping"
    );
    let f = dir.join("m.yaml");
    std::fs::write(&f, module).unwrap();
    let line = generate(&["--from-module", f.to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("kernel_mappings[1].literal ` 5.14.0-284.59.1.el9_2.x86_64` has leading"),
        "{line}"
    );
    // Another architecture's kernel: written, with a warning naming it.
    let out = generate(
        &[
            &base[..],
            &["--kernel-mapping-literal", "6.1.0-18-arm64=quay.io/a/b:2"],
        ]
        .concat(),
    );
    out.ok();
    assert!(out.stderr.starts_with("warning: kernel_mappings[0].literal `6.1.0-18-arm64` is an aarch64 kernel, but --arch is x86_64"), "{}", out.stderr);
    let out = generate(
        &[
            &base[..],
            &[
                "--arch",
                "aarch64",
                "--kernel-mapping-literal",
                "6.1.0-18-arm64=quay.io/a/b:2",
            ],
        ]
        .concat(),
    );
    assert!(
        out.ok().contains("6.1.0-18-arm64") && !out.stderr.contains("warning"),
        "{}",
        out.stderr
    );
}
