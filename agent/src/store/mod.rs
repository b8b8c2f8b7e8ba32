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
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub mod publish;
pub mod state;

/// Marks a tree as complete; written last, before the `current` swap.
pub const META_FILE: &str = "meta.json";
pub const CURRENT_LINK: &str = "current";
pub const PULL_STATE: &str = "pull.json";
pub const REPLACE_STATE: &str = "replace.json";
/// The crash-loop guard's record (`state::BootsState`).
pub const BOOTS_STATE: &str = "boots.json";
/// A tree's directory is this and the hex of its manifest digest.
const TREE_PREFIX: &str = "sha256-";

/// `sha256-<hex>`: the directory of the tree of manifest `sha256:<hex>`.
pub fn tree_name(hex: &str) -> String {
    format!("{TREE_PREFIX}{hex}")
}

/// The hex of a tree directory's name, if it is one (`sha256-` and 64
/// lowercase hex digits: the one digest rule, `oci::digest_hex`).
pub fn tree_hex(name: &str) -> Option<&str> {
    let hex = name.strip_prefix(TREE_PREFIX)?;
    crate::oci::digest_hex(&format!("sha256:{hex}")).ok()?;
    Some(hex)
}

/// `.sha256-<hex>.tmp`: where a tree is extracted before it is published.
pub fn temp_tree_name(hex: &str) -> String {
    format!(".{TREE_PREFIX}{hex}.tmp")
}

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
        tree_hex(t)?;
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
/// The file gets `mode` whatever the umask says (the temp file is created
/// with it, so the name never points at a file with other permissions).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tmp_path(path);
    let result = (|| -> io::Result<()> {
        let mut f = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given at creation is masked by the umask: set it exactly.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
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
    use kmm_day1_tests::scratch::TempDir;

    fn scratch(tag: &str) -> TempDir {
        TempDir::new(&format!("store-{tag}")).unwrap()
    }

    #[test]
    fn current_tree_requires_link_and_meta() {
        let tmp = scratch("current");
        let s = Store::new(tmp.path());
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
        // Only lowercase hex names a tree (the digest rule of oci::digest_hex).
        let upper = "AB".repeat(32);
        fs::create_dir_all(kdir.join(format!("sha256-{upper}"))).unwrap();
        fs::write(kdir.join(format!("sha256-{upper}")).join(META_FILE), "{}").unwrap();
        fs::remove_file(kdir.join(CURRENT_LINK)).unwrap();
        std::os::unix::fs::symlink(format!("sha256-{upper}"), kdir.join(CURRENT_LINK)).unwrap();
        assert_eq!(s.current_tree("sfc", "6.1.0-56-amd64"), None);
        // A link that escapes the kernel dir is never followed.
        fs::remove_file(kdir.join(CURRENT_LINK)).unwrap();
        std::os::unix::fs::symlink("/etc", kdir.join(CURRENT_LINK)).unwrap();
        assert_eq!(s.current_tree("sfc", "6.1.0-56-amd64"), None);
    }

    #[test]
    fn write_atomic_replaces_whole_file_and_leaves_no_temp() {
        let tmp = scratch("atomic");
        let p = tmp.join("sub").join("state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        // A temp file left by a crashed run with other permissions (or a
        // umask) does not decide the mode: it is set explicitly.
        use std::os::unix::fs::PermissionsExt;
        fs::write(tmp_path(&p), b"left over").unwrap();
        fs::set_permissions(tmp_path(&p), fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        assert!(!tmp_path(&p).exists());
        let names: Vec<_> = fs::read_dir(tmp.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn lock_is_exclusive() {
        let tmp = scratch("lock");
        let s = Store::new(tmp.path());
        let guard = s.lock().unwrap();
        let f = File::options().write(true).open(tmp.join(".lock")).unwrap();
        assert!(matches!(
            f.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(guard);
        assert!(f.try_lock().is_ok());
    }
}
