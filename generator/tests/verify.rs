//! `kmm-day1 verify` runs the agent's `verify` (the agent the generator
//! embeds, written to a temp file and executed): same lines, same exit
//! code as `kmm-day1-agent verify`, from an OCI layout and from the real
//! `docker-registry`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use kmm_day1_tests::{require_tool, static_agent};

use kmm_day1_tests::image::kmm_image;
use kmm_day1_tests::kernel_tree::{self, MODULES};

const KMM_DAY1: &str = env!("CARGO_BIN_EXE_kmm-day1");

fn out(o: &Output) -> (Option<i32>, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// The generator's verify; with `agent`, through `--agent` (a generator
/// built without embedded agents).
fn gen_verify(agent: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(KMM_DAY1);
    cmd.arg("verify");
    if let Some(a) = agent {
        cmd.arg("--agent").arg(a);
    }
    cmd.args(args)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

#[test]
fn generator_verify_is_the_agents_verify() {
    // The static agent `make test` builds is also the one the generator
    // embeds; without it there is nothing to compare against.
    let Some(agent) = static_agent("x86_64") else {
        return;
    };
    if !cfg!(target_arch = "x86_64") || !require_tool("umoci") || !require_tool("depmod") {
        return;
    }
    let Some((kver, debian)) = kernel_tree::debian().map(|t| (t.release, t.modules)) else {
        return;
    };
    let work = kmm_day1_tests::scratch::TempDir::new("genverify").unwrap();
    let layout = work.join("layout");
    kmm_image(
        &layout,
        "good",
        &debian,
        &kver,
        &MODULES,
        &[("tehuti/bdx.bin", b"fw")],
    )
    .unwrap();
    kmm_image(&layout, "nofw", &debian, &kver, &MODULES, &[]).unwrap();
    let l = layout.to_str().unwrap();

    for (tag, code) in [("good", 0), ("nofw", 1)] {
        let image = format!("registry.test/acme/drv:{tag}");
        let args = [
            "--image",
            &image,
            "--oci-layout",
            l,
            "--module",
            "tehuti",
            "--module",
            "vrf",
        ];
        let mut direct = Command::new(&agent);
        let want = out(&direct
            .arg("verify")
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap());
        assert_eq!(want.0, Some(code), "{}", want.1);
        let embedded = gen_verify(None, &args);
        let err = String::from_utf8_lossy(&embedded.stderr);
        if err.contains("built without an embedded") {
            // A generator built without KMM_DAY1_AGENT_X86_64: --agent.
            assert!(!kmm_day1_tests::full_suite(), "{err}");
        } else {
            assert_eq!(out(&embedded), want, "{err}");
        }
        let via_flag = gen_verify(Some(&agent), &args);
        assert_eq!(out(&via_flag), want);
    }
    // Options and help pass through to the agent.
    let help = gen_verify(Some(&agent), &["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--oci-layout DIR"));
    let bad = gen_verify(Some(&agent), &["--image", "x", "--bogus"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bogus"));

    // The real registry, through the generator.
    use kmm_day1_tests::registry::{self, Registry, Setup};
    if registry::tools_available() && require_tool("skopeo") {
        let reg = Registry::start(Setup::default()).unwrap();
        kmm_day1_tests::run(
            Command::new("skopeo")
                .args([
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    "--dest-tls-verify=false",
                ])
                .arg(format!("oci:{l}:good"))
                .arg(format!("docker://{}/acme/drv:v1", reg.host())),
        );
        let image = format!("{}/acme/drv:v1", reg.host());
        let o = gen_verify(
            Some(&agent),
            &["--image", &image, "--insecure", "--module", "tehuti"],
        );
        let (code, text) = out(&o);
        assert_eq!(
            code,
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            text.contains(&format!("from {}/acme/drv", reg.host())),
            "{text}"
        );
        assert!(
            text.contains(&format!("ok   module tehuti [{kver}]")),
            "{text}"
        );
    }
}

/// `generate --check-image` runs the agent's verify for the config it is
/// about to write: a parameter the module does not have refuses, naming it
/// and writing nothing; the right one passes and the config is written.
#[test]
fn generate_check_image_refuses_a_parameter_the_module_lacks() {
    let Some(agent) = static_agent("x86_64") else {
        return;
    };
    if !cfg!(target_arch = "x86_64") || !require_tool("umoci") || !require_tool("depmod") {
        return;
    }
    let Some(t) = kernel_tree::debian() else {
        return;
    };
    let work = kmm_day1_tests::scratch::TempDir::new("gen-check").unwrap();
    let layout = work.join("layout");
    kmm_image(
        &layout,
        &t.release,
        &t.modules,
        &t.release,
        &["kernel/drivers/net/dummy.ko"],
        &[],
    )
    .unwrap();
    let generate = |param: &str| -> Output {
        let cfg = work.join("drv.toml");
        std::fs::write(
            &cfg,
            format!(
                "image = \"registry.test/acme/drv:${{KERNEL_FULL_VERSION}}\"\nmodules = [\"dummy\"]\n[parameters]\ndummy = [\"{param}\"]\n"
            ),
        )
        .unwrap();
        let out = work.join("out.toml");
        let _ = std::fs::remove_file(&out);
        Command::new(KMM_DAY1)
            .args(["generate", "--format", "config", "--arch", "x86_64"])
            .arg("--config")
            .arg(&cfg)
            .arg("--agent")
            .arg(&agent)
            .arg("--check-image")
            .arg(&layout)
            .args(["--check-kernel", &t.release])
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap()
    };
    let bad = generate("numdummy=2");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "config `drv` fails the agent's verify, nothing was written: FAIL parameters dummy"
        ) && err.contains("`numdummy` is not a parameter of dummy (did you mean `numdummies`?)"),
        "{err}"
    );
    assert!(!work.join("out.toml").exists());
    let good = generate("numdummies=2");
    let err = String::from_utf8_lossy(&good.stderr);
    assert_eq!(good.status.code(), Some(0), "{err}");
    assert!(err.contains("config `drv`: verify: "), "{err}");
    let written = std::fs::read_to_string(work.join("out.toml")).unwrap();
    assert!(written.contains("numdummies=2"), "{written}");
}

/// `generate --policy` asks the agent what a node with that policy would
/// decide: a warning (and the output still written) for an unsigned image,
/// the allowing scope once a signature made by tests/support/cosign-sign.py
/// (Python's `cryptography`) is pushed.
#[test]
fn generate_policy_warns_when_nodes_would_refuse_the_image() {
    use kmm_day1_tests::registry::{self, Format, Registry, Setup};
    let Some(agent) = static_agent("x86_64") else {
        return;
    };
    let crypto = Command::new("python3")
        .args(["-c", "import cryptography.hazmat.primitives.asymmetric.ec"])
        .status()
        .is_ok_and(|s| s.success());
    if !cfg!(target_arch = "x86_64")
        || !require_tool("umoci")
        || !require_tool("depmod")
        || !require_tool("skopeo")
        || !registry::tools_available()
        || !crypto
    {
        return;
    }
    let Some(t) = kernel_tree::debian() else {
        return;
    };
    let sign = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/support/cosign-sign.py"
    );
    let work = kmm_day1_tests::scratch::TempDir::new("gen-policy").unwrap();
    let layout = work.join("layout");
    kmm_image(
        &layout,
        "v1",
        &t.modules,
        &t.release,
        &["kernel/drivers/net/dummy.ko"],
        &[],
    )
    .unwrap();
    let reg = Registry::start(Setup::default()).unwrap();
    let digest = reg
        .push_layout(&layout, "v1", "acme/drv:v1", Format::Oci)
        .unwrap();
    kmm_day1_tests::run(
        Command::new("python3")
            .arg(sign)
            .arg("keygen")
            .arg(work.join("a")),
    );
    let policy = work.join("policy.json");
    std::fs::write(
        &policy,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{}/acme":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}}}}}"#,
            reg.host(),
            work.join("a.pub").display()
        ),
    )
    .unwrap();
    let regd = work.join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("on.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    )
    .unwrap();
    let cfg = work.join("drv.toml");
    std::fs::write(
        &cfg,
        format!(
            "image = \"{}/acme/drv:v1\"\nmodules = [\"dummy\"]\n[pull]\ninsecure = true\n",
            reg.host()
        ),
    )
    .unwrap();
    let generate = || -> (Output, bool) {
        let out = work.join("out.toml");
        let _ = std::fs::remove_file(&out);
        let o = Command::new(KMM_DAY1)
            .args(["generate", "--format", "config", "--arch", "x86_64"])
            .arg("--config")
            .arg(&cfg)
            .arg("--agent")
            .arg(&agent)
            .arg("--policy")
            .arg(&policy)
            .arg("--policy-registries-d")
            .arg(&regd)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        (o, out.exists())
    };
    let (o, written) = generate();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && written, "{err}");
    assert!(
        err.contains("nodes with this policy would refuse the image of config `drv`: policy: ")
            && err.contains("no signature: a sigstore signature is required"),
        "{err}"
    );
    kmm_day1_tests::run(
        Command::new("python3")
            .arg(sign)
            .args(["push", &reg.host(), "acme/drv", &digest, "--sign"])
            .arg(work.join("a.key"))
            .arg(format!("{}/acme/drv:v1", reg.host())),
    );
    let (o, written) = generate();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && written, "{err}");
    assert!(
        err.contains("config `drv`: allowed by")
            && err.contains("sigstoreSigned (key ")
            && !err.contains("would refuse"),
        "{err}"
    );
}
