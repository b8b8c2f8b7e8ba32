//! Debian's kernel module tree, as tests/setup.d/20-kernel-tree.sh caches it
//! (`$KMM_DAY1_KERNEL_CACHE`, default /var/cache/kmm-day1-tests/kernel):
//! `release` holds the kernel release, `root/lib/modules/<release>` the
//! modules with their modules.dep. One locator, so every suite skips (or, in
//! the full suite, fails) on the same condition with the same message.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::{full_suite, try_run};

/// A located tree.
#[derive(Debug, Clone)]
pub struct KernelTree {
    /// The kernel release, e.g. `6.1.0-18-amd64`.
    pub release: String,
    /// The root given to `depmod -b` (holds `lib/modules/<release>`).
    pub root: PathBuf,
    /// `<root>/lib/modules/<release>`.
    pub modules: PathBuf,
}

/// The cached tree, or `None` (after a skip message) when it is missing;
/// in the full suite a missing tree panics, because setup must provide it.
pub fn debian() -> Option<KernelTree> {
    let cache = std::env::var_os("KMM_DAY1_KERNEL_CACHE").map_or_else(
        || PathBuf::from("/var/cache/kmm-day1-tests/kernel"),
        PathBuf::from,
    );
    let release = fs::read_to_string(cache.join("release")).unwrap_or_default();
    let release = release.trim();
    let root = cache.join("root");
    let modules = root.join("lib/modules").join(release);
    // A tree without modules.dep is half-unpacked: every user needs depmod's
    // output, so it counts as missing.
    if !release.is_empty() && modules.join("modules.dep").is_file() {
        return Some(KernelTree {
            release: release.to_string(),
            root,
            modules,
        });
    }
    assert!(
        !full_suite(),
        "no Debian kernel tree in {}: tests/setup.d/20-kernel-tree.sh must provide it",
        cache.display()
    );
    eprintln!(
        "skipping: no Debian kernel tree in {} (run tests/setup.d/20-kernel-tree.sh)",
        cache.display()
    );
    None
}

/// `depmod -b <base> <release>`: kmod's own modules.dep for a tree, the
/// oracle the agent's reader is checked against.
pub fn depmod(base: &Path, release: &str) -> Result<()> {
    try_run(Command::new("depmod").arg("-b").arg(base).arg(release))?;
    Ok(())
}

/// `modinfo -F <field> <file>` by the real kmod.
pub fn modinfo(field: &str, file: &Path) -> Result<String> {
    Ok(
        try_run(Command::new("modinfo").args(["-F", field]).arg(file))?
            .trim()
            .to_string(),
    )
}

/// Debian modules the image tests use: `vrf` has a srcversion, `tehuti`
/// asks for firmware `tehuti/bdx.bin`, `macvtap` needs `macvlan` and `tap`.
pub const MODULES: [&str; 5] = [
    "kernel/drivers/net/vrf.ko",
    "kernel/drivers/net/ethernet/tehuti/tehuti.ko",
    "kernel/drivers/net/macvtap.ko",
    "kernel/drivers/net/macvlan.ko",
    "kernel/drivers/net/tap.ko",
];
