//! `kmm-day1-agent pull --oci-layout` on images built with the real `umoci`
//! in KMM's layout (`/opt/lib/modules/<kver>/…` with `modules.dep` from
//! `depmod -b`), holding real modules from Debian's kernel package
//! (tests/setup.d/20-kernel-tree.sh): the pipeline end to end without a
//! network — verified blobs, whiteouts across two layers, the checks that
//! reject an image, atomic publish and crash recovery.

// Helpers of a test crate: a failed step should panic with its error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use kmm_day1_tests::{full_suite, require_tool};

const AGENT: &str = env!("CARGO_BIN_EXE_kmm-day1-agent");

/// Debian's module tree: (release, lib/modules/<release> dir).
fn kernel_tree() -> Option<(String, PathBuf)> {
    let cache = std::env::var_os("KMM_DAY1_KERNEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kmm-day1-tests/kernel"));
    let release = fs::read_to_string(cache.join("release"))
        .ok()
        .map(|s| s.trim().to_string());
    match release {
        Some(r) if cache.join("root/lib/modules").join(&r).is_dir() => {
            let dir = cache.join("root/lib/modules").join(&r);
            Some((r, dir))
        }
        _ => {
            assert!(
                !full_suite(),
                "Debian's kernel tree is missing: tests/setup.d/20-kernel-tree.sh must provide it"
            );
            eprintln!("skipping: no Debian kernel tree (run tests/setup.d/20-kernel-tree.sh)");
            None
        }
    }
}

fn tools() -> bool {
    ["umoci", "depmod"].iter().all(|t| require_tool(t))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "kmm-day1-pull-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwX")
            .arg(&self.0)
            .status();
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A KMM driver image in an OCI layout, built in two layers:
/// 1. `extra/{macvtap,macvlan,tap,dummy}.ko` for `dir_kver`, modules.dep,
///    firmware (with a symlink), and files outside the selected dirs;
/// 2. removes `dummy.ko` (umoci writes a whiteout), re-runs depmod, adds a
///    firmware file.
///
/// Returns the bundle rootfs (the image as a container would see it).
struct Built {
    layout: PathBuf,
    rootfs: PathBuf,
}

fn build_image(work: &Path, modules: &Path, dir_kver: &str, tag: &str) -> Built {
    let layout = work.join("layout");
    if !layout.join("index.json").exists() {
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout));
    }
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    let bundle = work.join(format!("bundle-{tag}"));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let mdir = rootfs.join("opt/lib/modules").join(dir_kver);
    fs::create_dir_all(mdir.join("extra")).unwrap();
    for m in ["macvtap", "macvlan", "tap", "dummy"] {
        fs::copy(
            modules.join(format!("kernel/drivers/net/{m}.ko")),
            mdir.join(format!("extra/{m}.ko")),
        )
        .unwrap();
    }
    run(Command::new("depmod")
        .arg("-b")
        .arg(rootfs.join("opt"))
        .arg(dir_kver));
    fs::create_dir_all(rootfs.join("firmware/acme")).unwrap();
    fs::write(rootfs.join("firmware/acme/fw-1.bin"), [7u8; 3000]).unwrap();
    std::os::unix::fs::symlink("fw-1.bin", rootfs.join("firmware/acme/fw.bin")).unwrap();
    fs::create_dir_all(rootfs.join("usr/bin")).unwrap();
    fs::write(rootfs.join("usr/bin/tool"), "not extracted").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    // repack diffs against the image the bundle was unpacked from: unpack
    // the one-layer image again for the second layer.
    let bundle = work.join(format!("bundle-{tag}-2"));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let mdir = rootfs.join("opt/lib/modules").join(dir_kver);
    fs::remove_file(mdir.join("extra/dummy.ko")).unwrap();
    run(Command::new("depmod")
        .arg("-b")
        .arg(rootfs.join("opt"))
        .arg(dir_kver));
    fs::write(rootfs.join("firmware/acme/fw-2.bin"), [9u8; 5000]).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    Built { layout, rootfs }
}

/// Every path under `dir` → file bytes, `-> target` for links, `/` for dirs.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
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

struct Node {
    config_dir: PathBuf,
    store: PathBuf,
}

impl Node {
    fn new(work: &Path, toml: &str) -> Node {
        let config_dir = work.join("etc");
        fs::create_dir_all(&config_dir).unwrap();
        fs::write(config_dir.join("drv.toml"), toml).unwrap();
        Node {
            config_dir,
            store: work.join("store"),
        }
    }

    fn pull(&self, kver: &str, layout: &Path, notify: Option<&Path>) -> Output {
        let mut cmd = Command::new(AGENT);
        cmd.arg("pull")
            .arg("--no-reboot")
            .arg("--config-dir")
            .arg(&self.config_dir)
            .arg("--store")
            .arg(&self.store)
            .arg("--kernel-release")
            .arg(kver)
            .arg("--oci-layout")
            .arg(layout)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        if let Some(n) = notify {
            cmd.env("NOTIFY_SOCKET", n);
        }
        cmd.output().unwrap()
    }

    fn kdir(&self, kver: &str) -> PathBuf {
        self.store.join("drv").join(kver)
    }
}

const CONFIG: &str = r#"
image = "registry.test/acme/drv:v1"
modules = ["macvtap"]
firmware_dir = "/firmware"
"#;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The manifest digest umoci recorded for `tag`.
fn manifest_digest(layout: &Path, tag: &str) -> String {
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

fn layers(layout: &Path, manifest: &str) -> Vec<String> {
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
fn expected_tree(rootfs: &Path, kver: &str) -> BTreeMap<String, Vec<u8>> {
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

#[test]
fn publishes_exact_tree_then_does_nothing() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = Scratch::new("exact");
    let img = build_image(&work.0, &modules, &kver, "v1");
    let digest = manifest_digest(&img.layout, "v1");
    assert_eq!(layers(&img.layout, &digest).len(), 2, "two layers");
    let node = Node::new(&work.0, CONFIG);
    let sock_path = work.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();

    let out = node.pull(&kver, &img.layout, Some(&sock_path));
    assert!(out.status.success(), "{}", stderr(&out));
    let kdir = node.kdir(&kver);
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(
        fs::read_link(kdir.join("current")).unwrap(),
        PathBuf::from(format!("sha256-{hex}"))
    );
    let tree = kdir.join(format!("sha256-{hex}"));
    let mut got = snapshot(&tree);
    let meta: serde_json::Value =
        serde_json::from_slice(&got.remove("meta.json").unwrap()).unwrap();
    let want = expected_tree(&img.rootfs, &kver);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert_eq!(got, want, "file contents differ");
    assert!(!got.contains_key(&format!("lib/modules/{kver}/extra/dummy.ko")));
    assert_eq!(
        got[&"firmware/acme/fw.bin".to_string()],
        b"-> fw-1.bin".to_vec()
    );
    assert_eq!(meta["digest"], digest.as_str());
    assert_eq!(meta["kernel"], kver.as_str());
    assert_eq!(meta["image"], "registry.test/acme/drv:v1");
    assert_eq!(meta["firmware"], true);
    assert_eq!(meta["layers"].as_array().unwrap().len(), 2);

    let pull: serde_json::Value =
        serde_json::from_slice(&fs::read(node.store.join("drv/pull.json")).unwrap()).unwrap();
    assert_eq!(pull["result"], "published");
    assert_eq!(pull["digest"], digest.as_str());
    // Blobs are gone once the tree is published.
    assert_eq!(
        fs::read_dir(node.store.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("published registry.test/acme/drv:v1 ({digest})")),
        "{err}"
    );

    // sd_notify: progress STATUS lines, then READY=1 with the summary.
    let mut msgs = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        msgs.iter().any(|m| m.starts_with("STATUS=drv: layer 1/2")),
        "{msgs:#?}"
    );
    let last = msgs.last().unwrap();
    assert!(
        last.starts_with("READY=1\nSTATUS=pull for kernel") && last.contains("published"),
        "{msgs:#?}"
    );

    // A second run finds the tree and changes nothing.
    let before = snapshot(&node.store);
    let out = node.pull(&kver, &img.layout, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("is up to date"), "{err}");
    assert_eq!(err.lines().count(), 1, "one summary line: {err}");
    let mut after = snapshot(&node.store);
    // pull.json records the run itself; everything else is untouched.
    let p1: serde_json::Value =
        serde_json::from_slice(&after.remove("drv/pull.json").unwrap()).unwrap();
    let mut before = before;
    before.remove("drv/pull.json");
    assert_eq!(before, after);
    assert_eq!(p1["result"], "up-to-date");
}

fn assert_nothing_published(node: &Node, kver: &str) {
    let kdir = node.kdir(kver);
    let left: Vec<_> = fs::read_dir(&kdir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", kdir.display());
    let pull: serde_json::Value =
        serde_json::from_slice(&fs::read(node.store.join("drv/pull.json")).unwrap()).unwrap();
    assert_eq!(pull["result"], "failed");
}

#[test]
fn rejects_missing_module_wrong_vermagic_and_missing_kernel() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = Scratch::new("reject");
    let img = build_image(&work.0, &modules, &kver, "v1");

    let node = Node::new(&work.0.join("missing"), &CONFIG.replace("macvtap", "sfc"));
    let out = node.pull(&kver, &img.layout, None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "module `sfc` is not in /opt/lib/modules/{kver}/modules.dep"
        )) && err.contains("macvtap"),
        "{err}"
    );
    assert_nothing_published(&node, &kver);

    let node = Node::new(&work.0.join("nokernel"), CONFIG);
    let out = node.pull("6.1.0-9999-amd64", &img.layout, None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("has no module tree for kernel 6.1.0-9999-amd64")
            && err.contains(&format!("it has only {kver}")),
        "{err}"
    );
    assert_nothing_published(&node, "6.1.0-9999-amd64");

    // Modules of this kernel filed under another kernel's directory.
    let other = "6.1.0-9998-amd64";
    let img2 = build_image(&work.0.join("img2"), &modules, other, "v1");
    let node = Node::new(&work.0.join("vermagic"), CONFIG);
    let out = node.pull(other, &img2.layout, None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("was built for kernel {kver}, not {other}")),
        "{err}"
    );
    assert_nothing_published(&node, other);
}

#[test]
fn recovers_from_a_crash_mid_pull() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = Scratch::new("crash");
    let img = build_image(&work.0, &modules, &kver, "v1");
    let digest = manifest_digest(&img.layout, "v1");
    let hex = digest.trim_start_matches("sha256:");
    let node = Node::new(&work.0, CONFIG);

    // What a crash leaves: half a blob, a half-extracted temp tree, a
    // current.tmp link, a state temp file.
    let l2 = layers(&img.layout, &digest)[1].clone();
    let l2hex = l2.trim_start_matches("sha256:");
    let blob = fs::read(img.layout.join("blobs/sha256").join(l2hex)).unwrap();
    let blobs = node.store.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        blobs.join(format!("{l2hex}.partial")),
        &blob[..blob.len() / 2],
    )
    .unwrap();
    let kdir = node.kdir(&kver);
    let tmp = kdir.join(format!(".sha256-{hex}.tmp"));
    fs::create_dir_all(tmp.join(format!("lib/modules/{kver}/extra"))).unwrap();
    fs::write(
        tmp.join(format!("lib/modules/{kver}/extra/half.ko")),
        "half",
    )
    .unwrap();
    std::os::unix::fs::symlink("sha256-nothing", kdir.join("current.tmp")).unwrap();
    fs::write(node.store.join("drv/.pull.json.tmp"), "{").unwrap();

    let out = node.pull(&kver, &img.layout, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<_> = fs::read_dir(&kdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["current".to_string(), format!("sha256-{hex}")]);
    let mut got = snapshot(&kdir.join(format!("sha256-{hex}")));
    got.remove("meta.json");
    assert_eq!(got, expected_tree(&img.rootfs, &kver));
    assert!(!node.store.join("drv/.pull.json.tmp").exists());
    assert_eq!(fs::read_dir(&blobs).unwrap().count(), 0);
}
