//! Shared by `status_*`, `verify_*` and the generator's `verify` test
//! (which includes this file by path): one-layer KMM driver images built
//! with the real `umoci` and `depmod` from chosen Debian modules (the
//! `pull_common` images have only modules without srcversion or firmware).
//! Self-contained, because `pull_common` needs the agent crate's binary.

#![allow(clippy::unwrap_used, dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's module tree as tests/setup.d/20-kernel-tree.sh caches it:
/// (release, its lib/modules dir). Skips (or fails in the full suite).
pub fn debian_tree() -> Option<(String, PathBuf)> {
    kmm_day1_tests::kernel_tree::debian().map(|t| (t.release, t.modules))
}

pub use kmm_day1_tests::run;

/// Debian modules used: `vrf` has a srcversion, `tehuti` asks for firmware
/// `tehuti/bdx.bin`, `macvtap` needs `macvlan` and `tap`.
pub const MODULES: [&str; 5] = [
    "kernel/drivers/net/vrf.ko",
    "kernel/drivers/net/ethernet/tehuti/tehuti.ko",
    "kernel/drivers/net/macvtap.ko",
    "kernel/drivers/net/macvlan.ko",
    "kernel/drivers/net/tap.ko",
];

/// Add `layout:tag`: Debian's `modules` (paths relative to `debian`) in
/// `/opt/lib/modules/<dir_kver>/extra/`, `depmod -b /opt`, and `firmware`
/// files under `/firmware`.
pub fn image(
    layout: &Path,
    tag: &str,
    debian: &Path,
    dir_kver: &str,
    modules: &[&str],
    firmware: &[(&str, &[u8])],
) {
    if !layout.join("index.json").exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    let bundle = layout.with_file_name(format!("bundle-{tag}"));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let extra = rootfs.join("opt/lib/modules").join(dir_kver).join("extra");
    fs::create_dir_all(&extra).unwrap();
    for m in modules {
        let name = Path::new(m).file_name().unwrap();
        fs::copy(debian.join(m), extra.join(name)).unwrap();
    }
    run(Command::new("depmod")
        .arg("-b")
        .arg(rootfs.join("opt"))
        .arg(dir_kver));
    for (name, bytes) in firmware {
        let p = rootfs.join("firmware").join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
}

/// `modinfo -F <field> <file>` by the real kmod.
pub fn modinfo(field: &str, file: &Path) -> String {
    run(Command::new("modinfo").args(["-F", field]).arg(file))
        .trim()
        .to_string()
}
