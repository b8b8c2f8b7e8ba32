//! `kmm-day1-agent pull --oci-layout` on images built with the real `umoci`
//! in KMM's layout (`/opt/lib/modules/<kver>/…` with `modules.dep` from
//! `depmod -b`), holding real modules from Debian's kernel package
//! (tests/setup.d/20-kernel-tree.sh): the pipeline end to end without a
//! network — verified blobs, whiteouts across two layers, the checks that
//! reject an image, atomic publish and crash recovery.

// Helpers of a test crate: a failed step should panic with its error.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;

use kmm_day1_tests::require_tool;

mod pull_common;
use kmm_day1_tests::run;
use pull_common::*;

#[test]
fn publishes_exact_tree_then_does_nothing() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("exact").unwrap();
    let img = build_image(work.path(), &modules, &kver, "v1");
    let digest = manifest_digest(&img.layout, "v1");
    assert_eq!(layers(&img.layout, &digest).len(), 2, "two layers");
    let node = Node::new(work.path(), CONFIG);
    let sock_path = work.path().join("notify.sock");
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
    // A small image is not "0 MiB downloaded".
    assert!(
        err.contains(" KiB downloaded in ") && err.contains(" KiB extracted alongside"),
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

#[test]
fn rejects_missing_module_wrong_vermagic_and_missing_kernel() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("reject").unwrap();
    let img = build_image(work.path(), &modules, &kver, "v1");

    let node = Node::new(
        &work.path().join("missing"),
        &CONFIG.replace("macvtap", "sfc"),
    );
    let out = node.pull(&kver, &img.layout, None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "module sfc [{kver}]: not in /opt/lib/modules/{kver}/modules.dep"
        )) && err.contains("macvtap"),
        "{err}"
    );
    assert_nothing_published(&node, &kver);

    let node = Node::new(&work.path().join("nokernel"), CONFIG);
    let out = node.pull("6.1.0-9999-amd64", &img.layout, None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("tree [6.1.0-9999-amd64]: the image has no /opt/lib/modules/6.1.0-9999-amd64")
            && err.contains(&format!("(its kernel trees: {kver})")),
        "{err}"
    );
    assert_nothing_published(&node, "6.1.0-9999-amd64");

    // Modules of this kernel filed under another kernel's directory.
    let other = "6.1.0-9998-amd64";
    let img2 = build_image(&work.path().join("img2"), &modules, other, "v1");
    let node = Node::new(&work.path().join("vermagic"), CONFIG);
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
    let work = TempDir::new("crash").unwrap();
    let img = build_image(work.path(), &modules, &kver, "v1");
    let digest = manifest_digest(&img.layout, "v1");
    let hex = digest.trim_start_matches("sha256:");
    let node = Node::new(work.path(), CONFIG);

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

#[test]
fn reboot_is_requested_once_per_publish_and_guarded() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("reboot").unwrap();
    let img = build_image(work.path(), &modules, &kver, "v1");
    let node = Node::new(
        work.path(),
        &format!("{CONFIG}[pull]\nafter_pull = \"reboot\"\nmax_reboots_per_kernel = 2\n"),
    );
    // This host must not reboot: a `systemctl` first on PATH records calls.
    let (calls, path) = systemctl_recorder(work.path());
    let pull = || {
        node.command(&kver, None)
            .env("PATH", &path)
            .arg("--oci-layout")
            .arg(&img.layout)
            .output()
            .unwrap()
    };
    let reboots = |n: u64| {
        let st: serde_json::Value =
            serde_json::from_slice(&fs::read(node.store.join("drv/pull.json")).unwrap()).unwrap();
        assert_eq!(st["reboots"][&kver], n, "{st}");
    };
    let forget_tree = || fs::remove_dir_all(node.kdir(&kver)).unwrap();

    let out = pull();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&calls).unwrap(), "reboot\n");
    assert!(stderr(&out).contains("rebooting"), "{}", stderr(&out));
    reboots(1);
    // Up to date: no reboot.
    let out = pull();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&calls).unwrap(), "reboot\n");
    forget_tree();
    assert!(pull().status.success());
    reboots(2);
    forget_tree();
    let out = pull();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("already rebooted 2 times for kernel {kver}")),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&calls).unwrap(), "reboot\nreboot\n");
    reboots(2);
    let st: serde_json::Value =
        serde_json::from_slice(&fs::read(node.store.join("drv/pull.json")).unwrap()).unwrap();
    assert_eq!(st["result"], "failed");
    assert!(st["message"]
        .as_str()
        .unwrap()
        .contains("not rebooting again"));
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("error: pull for kernel"),
        "the summary line still comes last: {err}"
    );
}

#[test]
fn concurrent_runs_are_serialised_by_the_store_lock() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("lock").unwrap();
    let img = build_image_with(work.path(), &modules, &kver, "v1", 4 << 20);
    let node = Node::new(work.path(), CONFIG);
    let start = || {
        node.command(&kver, None)
            .arg("--no-reboot")
            .arg("--oci-layout")
            .arg(&img.layout)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    // Exactly one published; the other waited and found it up to date.
    let both = format!("{}{}", stderr(&a), stderr(&b));
    let published = both.lines().filter(|l| l.starts_with("drv: published"));
    assert_eq!(published.count(), 1, "{both}");
    assert_eq!(both.matches("is up to date").count(), 1, "{both}");
    let entries = fs::read_dir(node.kdir(&kver)).unwrap().count();
    assert_eq!(entries, 2, "current and one tree");
}

#[test]
fn no_configs_is_nothing_to_do() {
    let work = TempDir::new("noconf").unwrap();
    let node = Node::new(work.path(), "");
    fs::remove_file(node.config_dir.join("drv.toml")).unwrap();
    let out = node.pull_registry("6.1.0-1-amd64");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to pull"), "{}", stderr(&out));
    assert!(!node.store.exists(), "no store is created for nothing");
}

#[test]
fn zstd_and_zstd_chunked_layers_from_skopeo() {
    if !tools() || !require_tool("skopeo") {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("zstd").unwrap();
    let img = build_image(work.path(), &modules, &kver, "v1");
    for format in ["zstd", "zstd:chunked"] {
        let dest = work.path().join(format.replace(':', "-"));
        run(Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet"])
            .arg(format!("--dest-compress-format={format}"))
            .arg("--dest-compress")
            .arg(format!("oci:{}:v1", img.layout.display()))
            .arg(format!("oci:{}:v1", dest.display())));
        let digest = manifest_digest(&dest, "v1");
        let m: serde_json::Value = serde_json::from_slice(
            &fs::read(dest.join("blobs/sha256").join(&digest[7..])).unwrap(),
        )
        .unwrap();
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(
                l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
                "{format}"
            );
        }
        let node = Node::new(&dest.join("node"), CONFIG);
        let out = node.pull(&kver, &dest, None);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let mut got = snapshot(&node.kdir(&kver).join(format!("sha256-{}", &digest[7..])));
        got.remove("meta.json");
        assert_eq!(got, expected_tree(&img.rootfs, &kver), "{format}");
    }
}

#[test]
fn a_pinned_digest_in_the_store_needs_no_source() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("pinned").unwrap();
    let img = build_image(work.path(), &modules, &kver, "v1");
    let digest = manifest_digest(&img.layout, "v1");
    let node = Node::new(
        work.path(),
        &CONFIG.replace(
            "registry.test/acme/drv:v1",
            &format!("registry.test/acme/drv@{digest}"),
        ),
    );
    let out = node.pull(&kver, &img.layout, None);
    assert!(out.status.success(), "{}", stderr(&out));
    // The source is gone (a registry down at boot): still up to date.
    let gone = work.path().join("no-such-layout");
    let out = node.pull(&kver, &gone, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("is up to date"), "{}", stderr(&out));
    // A tag cannot be checked without the source.
    fs::write(node.config_dir.join("drv.toml"), CONFIG).unwrap();
    let out = node.pull(&kver, &gone, None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-layout"), "{}", stderr(&out));
}
