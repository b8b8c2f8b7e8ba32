//! Shared by the `pull_*` integration tests: KMM driver images built with
//! the real `umoci` from Debian's modules, a node (config dir + store) to
//! run `kmm-day1-agent pull` on, and tree snapshots to compare.

// Helpers of a test crate: a failed step should panic with its error.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kmm_day1_tests::image::Build;
use kmm_day1_tests::kernel_tree::depmod;
use kmm_day1_tests::require_tool;

/// The agent the black-box suites run: `KMM_DAY1_AGENT_UNDER_TEST` when
/// set (`make unit` points it at the static release agent, the binary that
/// ships), else the debug build cargo made for these tests. A variable
/// naming no executable file fails the test rather than falling back.
pub fn agent() -> &'static str {
    static AGENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| match std::env::var("KMM_DAY1_AGENT_UNDER_TEST") {
        Ok(p) if !p.is_empty() => {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).map(|m| m.is_file().then_some(m.permissions().mode()));
            assert!(
                matches!(mode, Ok(Some(m)) if m & 0o111 != 0),
                "KMM_DAY1_AGENT_UNDER_TEST={p} is not an executable file: build it \
                 (make agents) or unset the variable to test the debug build"
            );
            eprintln!("agent under test: {p}");
            p
        }
        _ => env!("CARGO_BIN_EXE_kmm-day1-agent").to_string(),
    })
}

/// Debian's module tree: (release, lib/modules/<release> dir).
pub fn kernel_tree() -> Option<(String, PathBuf)> {
    kmm_day1_tests::kernel_tree::debian().map(|t| (t.release, t.modules))
}

pub fn tools() -> bool {
    ["umoci", "depmod"].iter().all(|t| require_tool(t))
}

pub use kmm_day1_tests::scratch::TempDir;

/// `cmd` pointed at a node's config dir, store and kernel release, and cut
/// off from the machine's journal, notify socket and proxy settings: the
/// agent under test reaches only the test's own files and loopback servers.
pub fn on_node<'a>(
    cmd: &'a mut Command,
    config_dir: &Path,
    store: &Path,
    kver: &str,
) -> &'a mut Command {
    cmd.arg("--config-dir")
        .arg(config_dir)
        .arg("--store")
        .arg(store)
        .arg("--kernel-release")
        .arg(kver)
        // No staged deployment, not joined, whatever this host is; a test
        // of those sets its own root after this.
        .env("KMM_DAY1_NODE_ROOT", config_dir.join("no-node-root"));
    for var in [
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
}

/// A KMM driver image in an OCI layout, built in two layers:
/// 1. `extra/{macvtap,macvlan,tap,dummy}.ko` for `dir_kver`, modules.dep,
///    firmware (with a symlink), and files outside the selected dirs;
/// 2. removes `dummy.ko` (umoci writes a whiteout), re-runs depmod, adds a
///    firmware file.
///
/// Returns the bundle rootfs (the image as a container would see it).
pub struct Built {
    pub layout: PathBuf,
    pub rootfs: PathBuf,
}

pub fn build_image(work: &Path, modules: &Path, dir_kver: &str, tag: &str) -> Built {
    build_image_with(work, modules, dir_kver, tag, 0)
}

/// As [`build_image`], with `random_fw` bytes of incompressible firmware
/// (`firmware/acme/big.bin`) in the first layer.
pub fn build_image_with(
    work: &Path,
    modules: &Path,
    dir_kver: &str,
    tag: &str,
    random_fw: u64,
) -> Built {
    let layout = work.join("layout");
    let mut b = Build::new(&layout, tag, work).unwrap();
    b.layer(|rootfs| {
        let mdir = rootfs.join("opt/lib/modules").join(dir_kver);
        fs::create_dir_all(mdir.join("extra"))?;
        for m in ["macvtap", "macvlan", "tap", "dummy"] {
            fs::copy(
                modules.join(format!("kernel/drivers/net/{m}.ko")),
                mdir.join(format!("extra/{m}.ko")),
            )?;
        }
        depmod(&rootfs.join("opt"), dir_kver)?;
        fs::create_dir_all(rootfs.join("firmware/acme"))?;
        fs::write(rootfs.join("firmware/acme/fw-1.bin"), [7u8; 3000])?;
        if random_fw > 0 {
            let mut src = fs::File::open("/dev/urandom")?.take(random_fw);
            let mut dst = fs::File::create(rootfs.join("firmware/acme/big.bin"))?;
            std::io::copy(&mut src, &mut dst)?;
        }
        std::os::unix::fs::symlink("fw-1.bin", rootfs.join("firmware/acme/fw.bin"))?;
        fs::create_dir_all(rootfs.join("usr/bin"))?;
        fs::write(rootfs.join("usr/bin/tool"), "not extracted")?;
        Ok(())
    })
    .unwrap();
    let rootfs = b
        .layer(|rootfs| {
            let mdir = rootfs.join("opt/lib/modules").join(dir_kver);
            fs::remove_file(mdir.join("extra/dummy.ko"))?;
            depmod(&rootfs.join("opt"), dir_kver)?;
            fs::write(rootfs.join("firmware/acme/fw-2.bin"), [9u8; 5000])?;
            Ok(())
        })
        .unwrap();
    Built { layout, rootfs }
}

/// Every path under `dir` → file bytes, `-> target` for links, `/` for dirs.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(dir.join(&rel)).unwrap() {
            let e = e.unwrap();
            let p = rel.join(e.file_name());
            let key = p.to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let t = fs::read_link(e.path()).unwrap();
                out.insert(key, format!("-> {}", t.display()).into_bytes());
            } else if ft.is_dir() {
                out.insert(format!("{key}/"), Vec::new());
                stack.push(p);
            } else {
                out.insert(key, fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

pub struct Node {
    pub config_dir: PathBuf,
    pub store: PathBuf,
}

impl Node {
    pub fn new(work: &Path, toml: &str) -> Node {
        let config_dir = work.join("etc");
        fs::create_dir_all(&config_dir).unwrap();
        fs::write(config_dir.join("drv.toml"), toml).unwrap();
        Node {
            config_dir,
            store: work.join("store"),
        }
    }

    /// `pull --oci-layout LAYOUT`.
    pub fn pull(&self, kver: &str, layout: &Path, notify: Option<&Path>) -> Output {
        self.command(kver, notify)
            .arg("--no-reboot")
            .arg("--oci-layout")
            .arg(layout)
            .output()
            .unwrap()
    }

    /// `pull` from the registry the config names.
    pub fn pull_registry(&self, kver: &str) -> Output {
        self.command(kver, None)
            .arg("--no-reboot")
            .output()
            .unwrap()
    }

    /// `pull` with the node's dirs, without `--no-reboot`.
    pub fn command(&self, kver: &str, notify: Option<&Path>) -> Command {
        let mut cmd = Command::new(agent());
        on_node(cmd.arg("pull"), &self.config_dir, &self.store, kver);
        if let Some(n) = notify {
            cmd.env("NOTIFY_SOCKET", n);
        }
        cmd
    }

    pub fn kdir(&self, kver: &str) -> PathBuf {
        self.store.join("drv").join(kver)
    }
}

pub const CONFIG: &str = r#"
image = "registry.test/acme/drv:v1"
modules = ["macvtap"]
firmware_dir = "/firmware"
"#;

/// A `systemctl` that appends its arguments to `<work>/systemctl.calls`,
/// and a PATH that finds it first: the host never reboots, and the test
/// sees every reboot the agent asked for. Returns (calls file, PATH).
pub fn systemctl_recorder(work: &Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let bin = work.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let calls = work.join("systemctl.calls");
    fs::write(
        bin.join("systemctl"),
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    fs::set_permissions(bin.join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (calls, path)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The manifest digest umoci recorded for `tag`.
pub fn manifest_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn layers(layout: &Path, manifest: &str) -> Vec<String> {
    let hex = manifest.trim_start_matches("sha256:");
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// What the published tree must hold: the image's module dir and firmware
/// dir after both layers, file for file, plus meta.json.
pub fn expected_tree(rootfs: &Path, kver: &str) -> BTreeMap<String, Vec<u8>> {
    let mut want = BTreeMap::new();
    for (k, v) in snapshot(&rootfs.join("opt/lib/modules").join(kver)) {
        want.insert(format!("lib/modules/{kver}/{k}"), v);
    }
    for (k, v) in snapshot(&rootfs.join("firmware")) {
        want.insert(format!("firmware/{k}"), v);
    }
    for d in ["lib/", "lib/modules/", "firmware/"] {
        want.insert(d.to_string(), Vec::new());
    }
    want.insert(format!("lib/modules/{kver}/"), Vec::new());
    want
}

pub fn assert_nothing_published(node: &Node, kver: &str) {
    let kdir = node.kdir(kver);
    let left: Vec<_> = fs::read_dir(&kdir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", kdir.display());
    let pull: serde_json::Value =
        serde_json::from_slice(&fs::read(node.store.join("drv/pull.json")).unwrap()).unwrap();
    assert_eq!(pull["result"], "failed");
}
