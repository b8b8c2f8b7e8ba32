//! The store under `/var/lib/kmm-day1` (design §4). Shared by every phase:
//! `pull` writes trees, `replace` loads from them, `status` reports on them.
//!
//! ```text
//! <root>/.lock                                      flock serialising runs
//! <root>/blobs/sha256/<hex>[.partial]               verified blobs (removed after extract)
//! <root>/<name>/<kver>/current -> sha256-<hex>      swapped atomically (rename of a symlink)
//! <root>/<name>/<kver>/sha256-<hex>/lib/modules/<kver>/…   the image's module tree
//! <root>/<name>/<kver>/sha256-<hex>/firmware/…      the image's firmware dir, if any
//! <root>/<name>/<kver>/sha256-<hex>/meta.json       written last: its presence marks a complete tree
//! <root>/<name>/pull.json, replace.json             last results and counters of each phase
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Marks a tree as complete; written last, before the `current` swap.
pub const META_FILE: &str = "meta.json";
pub const CURRENT_LINK: &str = "current";
pub const PULL_STATE: &str = "pull.json";
pub const REPLACE_STATE: &str = "replace.json";

#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// `<root>/<name>`: everything belonging to one config.
    pub fn config_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `<root>/<name>/<kver>`.
    pub fn kernel_dir(&self, name: &str, kver: &str) -> PathBuf {
        self.config_dir(name).join(kver)
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// The complete tree `current` points at, if there is one. A `current`
    /// link to a directory without `meta.json` is treated as absent: the
    /// publish order makes that impossible, and if it happens anyway (manual
    /// tampering) a fresh pull is the right answer.
    pub fn current_tree(&self, name: &str, kver: &str) -> Option<PathBuf> {
        let kdir = self.kernel_dir(name, kver);
        let target = fs::read_link(kdir.join(CURRENT_LINK)).ok()?;
        // Only a plain `sha256-<hex>` sibling is acceptable as a target.
        let t = target.to_str()?;
        let hex = t.strip_prefix("sha256-")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let tree = kdir.join(t);
        tree.join(META_FILE).is_file().then_some(tree)
    }

    /// Take the store's exclusive lock, waiting for another run to finish.
    pub fn lock(&self) -> Result<StoreLock> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating store {}", self.root.display()))?;
        let path = self.root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(StoreLock { _file: file })
    }
}

/// Held while a run uses the store; the lock is released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Write `data` to `path` so that readers see the old or the new contents,
/// never a mix: temp file in the same directory, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tmp_path(path);
    let result = (|| -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// `dir/.name.tmp`: hidden, in the same directory so the rename is atomic.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kmm-day1-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn current_tree_requires_link_and_meta() {
        let root = scratch("current");
        let s = Store::new(&root);
        let hex = "ab".repeat(32);
        let kdir = s.kernel_dir("sfc", "6.1.0-56-amd64");
        fs::create_dir_all(kdir.join(format!("sha256-{hex}"))).unwrap();
        assert_eq!(s.current_tree("sfc", "6.1.0-56-amd64"), None);
        std::os::unix::fs::symlink(format!("sha256-{hex}"), kdir.join(CURRENT_LINK)).unwrap();
        assert_eq!(
            s.current_tree("sfc", "6.1.0-56-amd64"),
            None,
            "no meta.json yet"
        );
        fs::write(kdir.join(format!("sha256-{hex}")).join(META_FILE), "{}").unwrap();
        assert_eq!(
            s.current_tree("sfc", "6.1.0-56-amd64"),
            Some(kdir.join(format!("sha256-{hex}")))
        );
        // A link that escapes the kernel dir is never followed.
        fs::remove_file(kdir.join(CURRENT_LINK)).unwrap();
        std::os::unix::fs::symlink("/etc", kdir.join(CURRENT_LINK)).unwrap();
        assert_eq!(s.current_tree("sfc", "6.1.0-56-amd64"), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn write_atomic_replaces_whole_file_and_leaves_no_temp() {
        let root = scratch("atomic");
        let p = root.join("sub").join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
        let names: Vec<_> = fs::read_dir(root.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn lock_is_exclusive() {
        let root = scratch("lock");
        let s = Store::new(&root);
        let guard = s.lock().unwrap();
        let f = File::options()
            .write(true)
            .open(root.join(".lock"))
            .unwrap();
        assert!(matches!(
            f.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(guard);
        assert!(f.try_lock().is_ok());
        fs::remove_dir_all(&root).unwrap();
    }
}
