//! Scratch directories for tests: one per call, unique within the machine
//! (process id and a counter), removed with everything in them on drop.
//!
//! ```ignore
//! let tmp = kmm_day1_tests::scratch::TempDir::new("pull").unwrap();
//! let store = tmp.join("store");
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// A directory removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/kmm-day1-<tag>-<pid>-<n>`, created empty (a leftover of an
    /// earlier process with the same id is removed first).
    pub fn new(tag: &str) -> Result<TempDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "kmm-day1-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory (not created).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
    }
}

// A TempDir stands where its path would: `&dir` as a `&Path` argument,
// `dir.join(..)`, `Command::arg(&dir)`.
impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // umoci's rootless unpack and some tests leave read-only
        // directories, which remove_dir_all cannot empty.
        let _ = Command::new("chmod")
            .args(["-R", "u+rwX"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::TempDir;

    #[test]
    fn each_call_gets_its_own_directory_and_drop_removes_it() {
        let a = TempDir::new("t").unwrap();
        let b = TempDir::new("t").unwrap();
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir() && b.path().is_dir());
        std::fs::create_dir(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/f"), b"x").unwrap();
        let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
        drop(a);
        assert!(!pa.exists(), "{} survived its TempDir", pa.display());
        assert!(pb.exists());
    }
}
