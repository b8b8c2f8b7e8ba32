//! The aarch64 static agent that ships (`KMM_DAY1_AGENT_AARCH64`, built by
//! `make agents`), run under `qemu-aarch64` through the two things a node
//! does with it: a real `pull` over TLS (rustls and ring's aarch64 code)
//! from the loopback registry, of an index whose amd64 and arm64 entries
//! differ, and a
//! `replace --dry-run` on the tree it published. The x86_64 agent's
//! counterpart is every other black-box suite (`KMM_DAY1_AGENT_UNDER_TEST`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pull_common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use kmm_day1_tests::registry::{self as treg, Format, Image, Registry, Setup};
use kmm_day1_tests::{require_tool, static_agent};
use pull_common::{kernel_tree, on_node, snapshot, TempDir};

/// `qemu-aarch64 AGENT args…` with the node's dirs and no proxy or
/// systemd environment from the machine.
fn run(agent: &Path, args: &[&str], etc: &Path, store: &Path, kver: &str) -> Output {
    on_node(
        Command::new("qemu-aarch64").arg(agent).args(args),
        etc,
        store,
        kver,
    )
    .output()
    .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn aarch64_agent_pulls_and_plans_under_qemu() {
    let Some(agent) = static_agent("aarch64") else {
        return;
    };
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    if !require_tool("qemu-aarch64") || !treg::tools_available() {
        return;
    }
    // Anonymous: the helper pushes indexes without credentials.
    let reg = Registry::start(Setup {
        tls: true,
        ..Setup::default()
    })
    .unwrap();
    // The same driver tree for both platforms but for one firmware file,
    // which says which entry of the index was pulled.
    let ko = fs::read(modules.join("kernel/drivers/net/dummy.ko")).unwrap();
    let m = format!("opt/lib/modules/{kver}");
    let image = |arch: &str| {
        Image::new()
            .file(&format!("{m}/extra/dummy.ko"), &ko)
            .file(&format!("{m}/modules.dep"), b"extra/dummy.ko:\n")
            .file(
                "firmware/acme/fw.bin",
                format!("firmware for {arch}").as_bytes(),
            )
    };
    let (amd64, arm64) = (image("amd64"), image("arm64"));
    let index = reg
        .push_index(
            &format!("acme/drv:{kver}"),
            &[("amd64", None, &amd64), ("arm64", None, &arm64)],
            Format::Oci,
        )
        .unwrap();

    let s = TempDir::new("aarch64").unwrap();
    let (etc, store, ca) = (
        s.path().join("etc"),
        s.path().join("store"),
        s.path().join("ca"),
    );
    fs::create_dir_all(&etc).unwrap();
    fs::create_dir_all(&ca).unwrap();
    fs::copy(reg.ca_cert().unwrap(), ca.join("registry.crt")).unwrap();
    fs::write(
        etc.join("drv.toml"),
        format!(
            "image = \"{}/acme/drv:${{KERNEL_FULL_VERSION}}\"\nmodules = [\"dummy\"]\n\
             firmware_dir = \"/firmware\"\n[pull]\nauth_files = []\nca_dir = \"{}\"\n",
            reg.host(),
            ca.display()
        ),
    )
    .unwrap();

    let out = run(&agent, &["pull", "--no-reboot"], &etc, &store, &kver);
    assert!(
        out.status.success(),
        "pull under qemu-aarch64:\n{}",
        text(&out)
    );
    let tree = store.join("drv").join(&kver).join("current");
    let mut got = snapshot(&tree);
    let meta: serde_json::Value =
        serde_json::from_slice(&got.remove("meta.json").unwrap()).unwrap();
    assert_eq!(meta["index_digest"], index.as_str(), "{meta}");
    let mut want = std::collections::BTreeMap::new();
    for d in ["lib/", "lib/modules/", "firmware/", "firmware/acme/"] {
        want.insert(d.to_string(), Vec::new());
    }
    want.insert(format!("lib/modules/{kver}/"), Vec::new());
    want.insert(format!("lib/modules/{kver}/extra/"), Vec::new());
    want.insert(format!("lib/modules/{kver}/extra/dummy.ko"), ko.clone());
    want.insert(
        format!("lib/modules/{kver}/modules.dep"),
        b"extra/dummy.ko:\n".to_vec(),
    );
    want.insert(
        "firmware/acme/fw.bin".into(),
        b"firmware for arm64".to_vec(),
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(got == want, "the tree differs from the arm64 image");
    let blobs = store.join("blobs/sha256");
    assert!(
        fs::read_dir(&blobs).map_or(true, |mut d| d.next().is_none()),
        "blobs left after a successful pull"
    );

    // The plan for the tree it published, with the Debian tree as the
    // node's own modules.
    let host = modules.parent().unwrap().to_str().unwrap().to_string();
    let out = run(
        &agent,
        &[
            "replace",
            "--dry-run",
            "--json",
            "--host-modules-root",
            &host,
        ],
        &etc,
        &store,
        &kver,
    );
    // A pulled, not yet swapped node: the dry run exits as status would
    // (1, degraded: the swap waits for the next boot's replace).
    assert_eq!(
        out.status.code(),
        Some(1),
        "replace --dry-run:\n{}",
        text(&out)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["kernel"], kver.as_str(), "{plan}");
    let c = &plan["configs"][0];
    assert_eq!(
        (c["name"].as_str(), c["status"].as_str()),
        (Some("drv"), Some("planned")),
        "{plan}"
    );
    assert_eq!(c["state"], "pulled", "{plan}");
    let real = fs::canonicalize(&tree).unwrap();
    assert_eq!(
        c["firmware_path"],
        real.join("firmware").display().to_string(),
        "{plan}"
    );
    let load = c["load"].as_array().unwrap();
    assert_eq!(load.len(), 1, "{plan}");
    assert_eq!(load[0]["name"], "dummy");
    assert_eq!(load[0]["source"], "image");
    assert_eq!(
        load[0]["path"],
        real.join(format!("lib/modules/{kver}/extra/dummy.ko"))
            .display()
            .to_string(),
        "{plan}"
    );
}
