//! kill -9 at 20 random moments of a pull that replaces one image by
//! another (download, extract, sync, publish, gc), then a rerun: after
//! every kill `current` is exactly the old tree or exactly the new one
//! (never absent, never a mix), and after the rerun it is the new one with
//! no temp tree, `current.tmp` or partial blob left. No failpoints: the
//! moments are drawn uniformly over a measured clean run (seed printed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile_common;
mod pull_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hostile_common::{base_layer, write_layout, Layer, Tar, CONFIG};
use pull_common::{kernel_tree, snapshot, Node, TempDir};

/// `pull --oci-layout` with the node's dirs (pull_common's command), its
/// stderr kept for the assertions and stdout dropped.
fn pull(node: &Node, kver: &str, layout: &Path) -> Command {
    let mut c = node.command(kver, None);
    c.arg("--no-reboot")
        .arg("--oci-layout")
        .arg(layout)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The current tree without `meta.json` (it has the pull time), which must
/// be there: a tree without it is not complete.
fn current(work: &Path, kver: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let cur = work.join("store/drv").join(kver).join("current");
    if fs::symlink_metadata(&cur).is_err() {
        return None;
    }
    assert!(cur.join("meta.json").is_file(), "current has no meta.json");
    let mut t = snapshot(&cur);
    t.remove("meta.json");
    Some(t)
}

/// Two images with different firmware (`seed` picks the bytes), large
/// enough that each phase takes a while.
fn image(dir: &Path, kver: &str, modules: &Path, seed: u8) {
    let mut fw = Tar::new();
    for i in 0..6u32 {
        let data: Vec<u8> = (0..2_000_000u32)
            .map(|j| {
                ((j ^ i)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(u32::from(seed))
                    >> 9) as u8
            })
            .collect();
        fw.file(&format!("firmware/acme/blob-{seed}-{i}.bin"), &data);
    }
    let layers = vec![
        Layer::gzip(base_layer(kver, modules).finish()),
        Layer::gzip(fw.finish()),
    ];
    write_layout(dir, "v1", &layers);
}

#[test]
fn kill_9_at_random_moments_never_leaves_a_mixed_tree() {
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    if !hostile_common::tools() {
        return;
    }
    let s = TempDir::new("crash").unwrap();
    let work = s.path();
    let node = Node::new(work, CONFIG);
    // A fresh image per round (a tree already in the store would just be
    // made current again, without download or extraction).
    let layout = |n: u8| {
        let l = work.join(format!("layout-{n}"));
        image(&l, &kver, &modules, n);
        l
    };
    let first = layout(0);
    let t = Instant::now();
    let out = pull(&node, &kver, &first).output().unwrap();
    let clean = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_dir_all(&first).unwrap();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!(
        "seed {seed}, clean pull {:.0} ms",
        clean.as_secs_f64() * 1e3
    );
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut outcomes = BTreeMap::new();
    for round in 1..=20u8 {
        let old = current(work, &kver).expect("a tree is always current");
        let l = layout(round);
        let delay = Duration::from_micros(next() % (clean.as_micros() as u64 * 11 / 10).max(1));
        let mut child = pull(&node, &kver, &l).spawn().unwrap();
        std::thread::sleep(delay);
        let killed = child.try_wait().unwrap().is_none();
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let after = current(work, &kver).expect("current vanished after kill -9");

        // The rerun completes the replacement and cleans up.
        let out = pull(&node, &kver, &l).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let new = current(work, &kver).unwrap();
        assert_ne!(old, new);
        let label = match (killed, after == new, after == old) {
            (false, true, _) => "finished before the kill",
            (true, true, _) => "killed after the swap: new tree",
            (true, false, true) => "killed before the swap: old tree",
            _ => panic!("round {round}: after a kill at {delay:?} current was neither the old nor the new tree"),
        };
        *outcomes.entry(label).or_insert(0) += 1;
        println!(
            "round {round}: kill at {:>4} ms -> {label}",
            delay.as_millis()
        );
        let kdir = work.join("store/drv").join(&kver);
        let names: Vec<String> = fs::read_dir(&kdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(".tmp")),
            "temp left after the rerun: {names:?}"
        );
        let partial: Vec<_> = fs::read_dir(work.join("store/blobs/sha256"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            partial.is_empty(),
            "blobs left after a successful rerun: {partial:?}"
        );
        fs::remove_dir_all(&l).unwrap();
    }
    println!("{outcomes:?}");
}
