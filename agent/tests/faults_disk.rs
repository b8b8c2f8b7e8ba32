//! A full disk: the store on a small tmpfs (we are root; `mount` must
//! work, as it does on the dev machine and in CI). A pull that runs out of
//! space while downloading, or later while extracting, fails with the
//! errno's words, leaves the published tree exactly as it was and no temp
//! tree; once there is room the same pull publishes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile_common;
mod pull_common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hostile_common::{base_layer, write_layout, Layer, Tar, CONFIG};
use kmm_day1_tests::full_suite;
use pull_common::{agent, kernel_tree, snapshot, TempDir};

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                !full_suite(),
                "cannot mount a tmpfs (the full-disk test needs root and mount)"
            );
            eprintln!("skipping: cannot mount a tmpfs");
            return None;
        }
        Some(Mount(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn pull(work: &Path, store: &Path, kver: &str, layout: &Path) -> Output {
    Command::new(agent())
        .arg("pull")
        .arg("--config-dir")
        .arg(work.join("etc"))
        .arg("--store")
        .arg(store)
        .arg("--kernel-release")
        .arg(kver)
        .arg("--no-reboot")
        .arg("--oci-layout")
        .arg(layout)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The base tree plus `mib` MiB of random (incompressible) firmware.
fn image(dir: &Path, kver: &str, modules: &Path, mib: u64) {
    let mut noise = Vec::new();
    fs::File::open("/dev/urandom")
        .unwrap()
        .take(mib << 20)
        .read_to_end(&mut noise)
        .unwrap();
    let mut fw = Tar::new();
    fw.file("firmware/acme/big.bin", &noise);
    write_layout(
        dir,
        "v1",
        &[
            Layer::gzip(base_layer(kver, modules).finish()),
            Layer::gzip(fw.finish()),
        ],
    );
}

fn current(store: &Path, kver: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut t = snapshot(&store.join("drv").join(kver).join("current"));
    assert!(t.remove("meta.json").is_some());
    t
}

#[test]
fn a_full_store_fails_cleanly_and_keeps_the_old_tree() {
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    if !hostile_common::tools() {
        return;
    }
    let s = TempDir::new("disk").unwrap();
    let work = s.path();
    fs::create_dir_all(work.join("etc")).unwrap();
    fs::write(work.join("etc/drv.toml"), CONFIG).unwrap();
    let Some(mnt) = Mount::tmpfs(&work.join("store"), "3m") else {
        return;
    };
    let store = mnt.0.clone();
    let (a, b) = (work.join("a"), work.join("b"));
    image(&a, &kver, &modules, 0);
    // 2 MiB compressed, 2 MiB extracted.
    image(&b, &kver, &modules, 2);

    let out = pull(work, &store, &kver, &a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old = current(&store, &kver);

    // 1 MiB: the download runs out of space (the partial blob is removed,
    // so the state can be written). 3 MiB: the 2 MiB layer completes, its
    // 2 MiB of firmware do not fit beside it.
    for (size, phase) in [("1m", "downloading"), ("3m", "extracting")] {
        mnt.resize(size);
        let out = pull(work, &store, &kver, &b);
        let err = String::from_utf8_lossy(&out.stderr);
        println!(
            "full disk while {phase}: exit {:?}:\n{err}",
            out.status.code()
        );
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("No space left on device"), "{phase}: {err}");
        assert_eq!(current(&store, &kver), old, "{phase}: the old tree changed");
        // The result is recorded (a partial blob filling the disk would
        // keep pull.json from being written: it is removed).
        let state: serde_json::Value =
            serde_json::from_slice(&fs::read(store.join("drv/pull.json")).unwrap()).unwrap();
        assert_eq!(state["result"], "failed", "{phase}: {state}");
        assert!(
            state["message"]
                .as_str()
                .unwrap()
                .contains("No space left on device"),
            "{phase}: {state}"
        );
        assert!(!err.contains("pull.json"), "{phase}: {err}");
        let kdir = store.join("drv").join(&kver);
        let temp: Vec<_> = fs::read_dir(&kdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(temp.is_empty(), "{phase}: temp left: {temp:?}");
    }

    // Room again: the same pull publishes B.
    mnt.resize("16m");
    let out = pull(work, &store, &kver, &b);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = current(&store, &kver);
    assert_ne!(new, old);
    assert_eq!(new["firmware/acme/big.bin"].len(), 2 << 20);
}
