//! Shared by the replace_* integration tests.

use std::path::PathBuf;

/// The unpacked tree: (root given to depmod -b, kernel release).
pub fn debian_tree() -> Option<(PathBuf, String)> {
    kmm_day1_tests::kernel_tree::debian().map(|t| (t.root, t.release))
}
