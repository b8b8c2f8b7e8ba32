//! `pull --staged` and the reboot guard for joined nodes, black-box, on a
//! node root that stands for an RHCOS node (`KMM_DAY1_NODE_ROOT`): an
//! ostree deployment tree with a kernel, `/run/ostree/staged-deployment`
//! as ostree writes it (a GVariant naming the deployment), the kubelet's
//! client certificate. Images are built with the real `umoci` from
//! Debian's modules; a `systemctl` first on PATH records reboot requests.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod pull_common;
use pull_common::*;

const CSUM: &str = "3b9c7f5a2e4d6b8c0a1f3e5d7c9b2a4f6e8d0c1b3a7f3c9a1e0b5d4c2f8a6e1d";
/// The boot-image kernel the node runs before the pivot: no tree, no image.
const RUNNING: &str = "5.14.0-1.el9.x86_64";

struct World {
    work: TempDir,
    node: Node,
    root: PathBuf,
    layout: PathBuf,
    kver: String,
    calls: PathBuf,
    path: String,
}

fn world(name: &str, extra: &str) -> Option<World> {
    if !tools() {
        return None;
    }
    let (kver, modules) = kernel_tree()?;
    let work = TempDir::new(name).unwrap();
    let img = build_image(work.path(), &modules, &kver, &kver);
    let node = Node::new(
        work.path(),
        &format!(
            "image = \"registry.test/acme/drv:${{KERNEL_FULL_VERSION}}\"\nmodules = [\"macvtap\"]\n{extra}"
        ),
    );
    let root = work.path().join("node");
    fs::create_dir_all(&root).unwrap();
    let (calls, path) = systemctl_recorder(work.path());
    Some(World {
        layout: img.layout,
        node,
        root,
        kver,
        calls,
        path,
        work,
    })
}

impl World {
    /// A deployment `<CSUM>.<serial>` with a kernel for each release, staged.
    fn stage(&self, serial: u32, kernels: &[&str]) -> String {
        let name = format!("{CSUM}.{serial}");
        let dep = self.root.join("ostree/deploy/rhcos/deploy").join(&name);
        for k in kernels {
            let m = dep.join("usr/lib/modules").join(k);
            fs::create_dir_all(&m).unwrap();
            fs::write(m.join("vmlinuz"), b"not a kernel").unwrap();
        }
        // ostree's a{sv}: target = {name, osname, bootcsum}, strings
        // NUL-terminated between GVariant framing bytes.
        let mut v = b"target\x00\x00".to_vec();
        for s in ["name", &name, "osname", "rhcos", "bootcsum", "00ff"] {
            v.extend_from_slice(s.as_bytes());
            v.extend_from_slice(b"\x00\x00s\x0b");
        }
        fs::create_dir_all(self.root.join("run/ostree")).unwrap();
        fs::write(self.root.join("run/ostree/staged-deployment"), v).unwrap();
        format!("rhcos/{name}")
    }

    fn join_cluster(&self) {
        let cert = self
            .root
            .join("var/lib/kubelet/pki/kubelet-client-current.pem");
        fs::create_dir_all(cert.parent().unwrap()).unwrap();
        fs::write(cert, b"-----BEGIN CERTIFICATE-----\n").unwrap();
    }

    fn agent(&self, sub: &str, kver: &str) -> Command {
        let mut cmd = Command::new(agent());
        on_node(cmd.arg(sub), &self.node.config_dir, &self.node.store, kver);
        cmd.env("KMM_DAY1_NODE_ROOT", &self.root)
            .env("PATH", &self.path);
        cmd
    }

    fn pull(&self, running: &str, staged: bool) -> Output {
        let mut cmd = self.agent("pull", running);
        if staged {
            cmd.arg("--staged");
        }
        cmd.arg("--oci-layout").arg(&self.layout).output().unwrap()
    }

    fn status(&self, running: &str) -> (i32, serde_json::Value, String) {
        let j = self
            .agent("status", running)
            .arg("--json")
            .output()
            .unwrap();
        let t = self.agent("status", running).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&j.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&j.stdout)));
        assert_eq!(j.status.code(), t.status.code());
        (
            j.status.code().unwrap(),
            v,
            String::from_utf8_lossy(&t.stdout).into_owned(),
        )
    }

    fn reboots(&self) -> String {
        fs::read_to_string(&self.calls).unwrap_or_default()
    }

    fn tree(&self, kver: &str) -> PathBuf {
        self.node.store.join("drv").join(kver).join("current")
    }
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// The first-boot pivot: the node runs the boot-image kernel, the MCD has
/// staged the cluster's OS. The staged pull publishes for the staged
/// kernel only, never reboots, and `status` follows it: not yet, pulled.
#[test]
fn staged_pull_publishes_for_the_staged_kernel_and_never_reboots() {
    let Some(w) = world("staged", "") else {
        return;
    };
    // Nothing staged: nothing to do, nothing written.
    let out = w.pull(RUNNING, true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to pull"), "{}", stderr(&out));
    assert!(!w.node.store.join("drv").exists());

    let dep = w.stage(0, &[&w.kver]);
    let (_, v, text) = w.status(RUNNING);
    let p = &v["configs"][0]["pending_kernels"];
    assert_eq!(p.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(p[0]["kernel"], w.kver.as_str());
    assert_eq!(p[0]["deployment"], dep.as_str());
    assert_eq!(p[0]["state"], "not-yet");
    assert!(
        text.contains(&format!("  staged:   kernel {} ({dep}): not-yet: ", w.kver)),
        "{text}"
    );

    let out = w.pull(RUNNING, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let digest = manifest_digest(&w.layout, &w.kver);
    assert!(
        err.contains(&format!("kernel {} of {dep}: drv: published", w.kver)),
        "{err}"
    );
    assert!(err.contains("the next boot swaps with no reboot"), "{err}");
    assert!(w.tree(&w.kver).exists());
    assert!(
        !w.tree(RUNNING).exists(),
        "nothing for the boot-image kernel"
    );
    assert_eq!(w.reboots(), "", "a staged pull never reboots");
    // Its result is the staged kernel's, not the running one's.
    let st = json(&w.node.store.join("drv").join(&w.kver).join("pull.json"));
    assert_eq!(st["result"], "published");
    assert_eq!(st["kernel"], w.kver.as_str());
    assert!(!w.node.store.join("drv/pull.json").exists());

    let (_, v, text) = w.status(RUNNING);
    let p = &v["configs"][0]["pending_kernels"][0];
    assert_eq!(p["state"], "pulled");
    assert_eq!(p["digest"], digest.as_str());
    assert!(text.contains(&format!("pulled {digest}")), "{text}");

    // Again (the unit's start after a restart): the store has it.
    let out = w.pull(RUNNING, true);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("drv: already in the store"),
        "{}",
        stderr(&out)
    );
}

/// A staged kernel the registry has no image for: the staged pull fails
/// (exit 1, the unit's stop logs it), nothing reboots, and `status` names
/// the kernel, the failure, and is degraded; the kernel that has an image
/// is still pulled.
#[test]
fn a_staged_kernel_with_no_image_is_reported_not_retried_in_a_loop() {
    let Some(w) = world("staged-missing", "") else {
        return;
    };
    let missing = "6.1.0-999-amd64";
    w.stage(1, &[&w.kver, missing]);
    let out = w.pull(RUNNING, true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("boots on the in-tree driver"), "{err}");
    assert!(w.tree(&w.kver).exists());
    assert!(!w.tree(missing).exists());
    assert_eq!(w.reboots(), "");
    let (code, v, text) = w.status(RUNNING);
    assert_eq!(code, 1, "degraded: {text}");
    let p = &v["configs"][0]["pending_kernels"];
    let missing_entry = p
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kernel"] == missing)
        .unwrap();
    assert_eq!(missing_entry["state"], "failed");
    assert!(
        missing_entry["message"]
            .as_str()
            .unwrap()
            .contains(&format!("drv:{missing}")),
        "{v}"
    );
}

/// After the node joined the cluster, a pull that publishes for the
/// running kernel does not reboot it (the MCO's job), says so, and exits
/// 0; `status` says the swap waits for the MCO's reboot. The explicit
/// `reboot_joined_node = true` restores the reboot.
#[test]
fn a_joined_node_is_not_rebooted_unless_the_config_asks() {
    let Some(w) = world("joined", "") else {
        return;
    };
    w.join_cluster();
    let out = w.pull(&w.kver, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the node has joined the cluster"), "{err}");
    assert!(
        err.contains("the swap waits for the next reboot the MCO orders"),
        "{err}"
    );
    assert_eq!(w.reboots(), "");
    let (_, v, _) = w.status(&w.kver);
    assert_eq!(v["configs"][0]["state"], "pulled");
    assert!(
        v["configs"][0]["next_action"]
            .as_str()
            .unwrap()
            .starts_with("swap at the next reboot the MCO orders"),
        "{v}"
    );

    let Some(w) = world("joined-asks", "[pull]\nreboot_joined_node = true\n") else {
        return;
    };
    w.join_cluster();
    let out = w.pull(&w.kver, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(w.reboots(), "reboot\n");

    // Before joining, the reboot is the fallback.
    let Some(w) = world("not-joined", "") else {
        return;
    };
    let out = w.pull(&w.kver, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(w.reboots(), "reboot\n");
    drop(w.work);
}
