//! Where the node is in its life, as the agent's reboot decisions need it
//! (docs/upgrades.md): the kernels of the OS deployment rpm-ostree has
//! staged for the next boot, and whether the node has joined the cluster.
//!
//! Staging: before the MCO reboots a node into a new OS (the first-boot
//! pivot and every update), rpm-ostree checks the new deployment out under
//! `/ostree/deploy/<stateroot>/deploy/<checksum>.<serial>/` and records it
//! in `/run/ostree/staged-deployment`, a GVariant `a{sv}` whose `target`
//! holds the deployment's `name` (`<checksum>.<serial>`) and `osname` as
//! strings; the shutdown's `ostree-finalize-staged.service` turns it into
//! the boot entry. The deployment's kernels are its
//! `usr/lib/modules/<release>/vmlinuz`: reading them there, not guessing
//! from the OS image, is right for `kernelType: realtime` and 64k kernels.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Present while a deployment is staged (ostree's runstate file).
pub const STAGED_FILE: &str = "run/ostree/staged-deployment";
/// `<stateroot>/deploy/<checksum>.<serial>` below it.
const DEPLOY_DIR: &str = "ostree/deploy";
/// The joined-node criterion: the kubelet writes its client certificate
/// here once the cluster approved its CSR, so the node is (or was) a
/// Node object the scheduler may place workloads on. The pre-pivot first
/// boot never runs the kubelet, so it never has this file.
pub const KUBELET_CLIENT_CERT: &str = "var/lib/kubelet/pki/kubelet-client-current.pem";

/// `/`, or `KMM_DAY1_NODE_ROOT` (tests: a directory standing for the
/// node's root; not in `--help`).
pub fn root() -> PathBuf {
    std::env::var_os("KMM_DAY1_NODE_ROOT").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// The node has joined the cluster (see [`KUBELET_CLIENT_CERT`]).
pub fn joined(root: &Path) -> bool {
    root.join(KUBELET_CLIENT_CERT).exists()
}

/// A kernel the node will boot next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub kernel: String,
    /// `<stateroot>/<checksum>.<serial>`.
    pub deployment: String,
}

/// The kernels of the staged deployment other than `running`; empty when
/// nothing is staged. An unreadable or unmatched staged file is an error:
/// something is staged and the agent cannot tell what.
pub fn pending(root: &Path, running: &str) -> Result<Vec<Pending>> {
    let staged_path = root.join(STAGED_FILE);
    let mut staged = Vec::new();
    match fs::File::open(&staged_path) {
        // The file is a few hundred bytes; the cap keeps a bad one cheap.
        Ok(f) => f
            .take(1 << 20)
            .read_to_end(&mut staged)
            .with_context(|| format!("reading {}", staged_path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", staged_path.display())),
    };
    let mut out = Vec::new();
    let mut matched = false;
    for (stateroot, name, dir) in deployments(&root.join(DEPLOY_DIR)) {
        // GVariant strings are NUL-terminated: `name\0` and `osname\0`
        // match whole strings, never a prefix of another checksum.
        if !(contains(&staged, &[name.as_bytes(), b"\0"].concat())
            && contains(&staged, &[stateroot.as_bytes(), b"\0"].concat()))
        {
            continue;
        }
        matched = true;
        for kernel in kernels(&dir) {
            if kernel != running {
                out.push(Pending {
                    kernel,
                    deployment: format!("{stateroot}/{name}"),
                });
            }
        }
    }
    if !matched {
        bail!(
            "{} names no deployment under {}: cannot tell which kernel boots next",
            staged_path.display(),
            root.join(DEPLOY_DIR).display()
        );
    }
    out.sort_by(|a, b| a.kernel.cmp(&b.kernel));
    out.dedup_by(|a, b| a.kernel == b.kernel);
    Ok(out)
}

/// Sorted names of the subdirectories of `dir` (none if unreadable).
fn subdirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// `(stateroot, <checksum>.<serial>, path)` of every deployment.
fn deployments(base: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    for stateroot in subdirs(base) {
        let deploy = base.join(&stateroot).join("deploy");
        for name in subdirs(&deploy) {
            let dir = deploy.join(&name);
            out.push((stateroot.clone(), name, dir));
        }
    }
    out
}

/// The releases of a deployment's kernels: `usr/lib/modules/<release>/`
/// holding a `vmlinuz` (where ostree requires the kernel to be).
fn kernels(deployment: &Path) -> Vec<String> {
    let modules = deployment.join("usr/lib/modules");
    subdirs(&modules)
        .into_iter()
        .filter(|k| modules.join(k).join("vmlinuz").is_file())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    const CSUM: &str = "7f3c9a1e0b5d4c2f8a6e1d3b9c7f5a2e4d6b8c0a1f3e5d7c9b2a4f6e8d0c1b3a";

    fn deployment(root: &Path, name: &str, kernels: &[&str]) {
        for k in kernels {
            let d = root.join(DEPLOY_DIR).join("rhcos/deploy").join(name);
            let m = d.join("usr/lib/modules").join(k);
            fs::create_dir_all(&m).unwrap();
            fs::write(m.join("vmlinuz"), b"kernel").unwrap();
        }
    }

    /// The staged file as ostree writes it: the GVariant's strings with
    /// their NUL terminators among binary framing.
    fn stage(root: &Path, name: &str) {
        let mut v = b"\x00\x01target\x00".to_vec();
        for s in ["name", name, "osname", "rhcos", "bootcsum", "ab12"] {
            v.extend_from_slice(s.as_bytes());
            v.extend_from_slice(b"\x00\x00s\x08");
        }
        fs::create_dir_all(root.join("run/ostree")).unwrap();
        fs::write(root.join(STAGED_FILE), v).unwrap();
    }

    #[test]
    fn the_staged_deployments_kernels_other_than_the_running_one() {
        let tmp = TempDir::new("node-pending").unwrap();
        let root = tmp.path();
        let booted = format!("{}.0", &CSUM[..63].replace('7', "1"));
        let staged = format!("{CSUM}.1");
        deployment(root, &booted, &["5.14.0-427.13.1.el9_4.x86_64"]);
        deployment(
            root,
            &staged,
            &[
                "5.14.0-427.31.1.el9_4.x86_64",
                "5.14.0-427.31.1.el9_4.x86_64+rt",
            ],
        );
        // Nothing staged: nothing pending, whatever is deployed.
        assert_eq!(pending(root, "5.14.0-427.13.1.el9_4.x86_64").unwrap(), []);
        stage(root, &staged);
        let got = pending(root, "5.14.0-427.13.1.el9_4.x86_64").unwrap();
        let kernels: Vec<_> = got.iter().map(|p| p.kernel.as_str()).collect();
        assert_eq!(
            kernels,
            [
                "5.14.0-427.31.1.el9_4.x86_64",
                "5.14.0-427.31.1.el9_4.x86_64+rt"
            ]
        );
        assert_eq!(got[0].deployment, format!("rhcos/{staged}"));
        // The running kernel is never pending, even in the staged tree.
        let got = pending(root, "5.14.0-427.31.1.el9_4.x86_64").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kernel, "5.14.0-427.31.1.el9_4.x86_64+rt");
    }

    #[test]
    fn a_module_dir_without_a_kernel_and_an_unmatched_stage_are_not_kernels() {
        let tmp = TempDir::new("node-unmatched").unwrap();
        let root = tmp.path();
        let staged = format!("{CSUM}.0");
        deployment(root, &staged, &["6.1.0-1-amd64"]);
        // A module tree of a kernel the deployment does not boot (no vmlinuz).
        let extra = root
            .join(DEPLOY_DIR)
            .join("rhcos/deploy")
            .join(&staged)
            .join("usr/lib/modules/6.1.0-9-amd64");
        fs::create_dir_all(&extra).unwrap();
        stage(root, &staged);
        let got = pending(root, "6.0.0-0-amd64").unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        // A serial that only extends the staged one's digits does not match.
        stage(root, &format!("{CSUM}.01"));
        let e = pending(root, "6.0.0-0-amd64").unwrap_err();
        assert!(
            format!("{e:#}").contains("names no deployment under"),
            "{e:#}"
        );
    }

    #[test]
    fn joined_is_the_kubelet_client_certificate() {
        let tmp = TempDir::new("node-joined").unwrap();
        assert!(!joined(tmp.path()));
        let cert = tmp.path().join(KUBELET_CLIENT_CERT);
        fs::create_dir_all(cert.parent().unwrap()).unwrap();
        fs::write(&cert, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        assert!(joined(tmp.path()));
    }
}
