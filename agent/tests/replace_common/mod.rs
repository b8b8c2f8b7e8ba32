//! Shared by the replace_* integration tests.

use std::fs;
use std::path::PathBuf;

use kmm_day1_tests::full_suite;

/// The unpacked tree: (root given to depmod -b, kernel release).
pub fn debian_tree() -> Option<(PathBuf, String)> {
    let cache = std::env::var_os("KMM_DAY1_KERNEL_CACHE").map_or_else(
        || PathBuf::from("/var/cache/kmm-day1-tests/kernel"),
        PathBuf::from,
    );
    let release = fs::read_to_string(cache.join("release")).ok();
    match release {
        Some(r)
            if cache
                .join("root/lib/modules")
                .join(r.trim())
                .join("modules.dep")
                .is_file() =>
        {
            Some((cache.join("root"), r.trim().to_string()))
        }
        _ => {
            assert!(
                !full_suite(),
                "no kernel tree in {}: tests/setup.d/20-kernel-tree.sh must run first",
                cache.display()
            );
            eprintln!(
                "skipping: no kernel tree in {} (run tests/setup.d/20-kernel-tree.sh)",
                cache.display()
            );
            None
        }
    }
}
