//! Making a tree visible, atomically (design §4), and cleaning up after.
//!
//! Order, each step durable before the next: the tree is extracted into
//! `<kdir>/.sha256-<hex>.tmp`; `meta.json` is written into it last; the
//! filesystem is synced (`syncfs`: every file and directory written); the
//! temp dir is renamed to `sha256-<hex>`; a `current.tmp` symlink is renamed
//! over `current`; the kernel dir is fsynced. A crash at any point leaves
//! either the old `current` or the new one, never a partial tree behind it.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::state::{self, TreeMeta};
use super::{
    fsync_dir, temp_tree_name, tree_hex, tree_name, Store, StoreLock, CURRENT_LINK, META_FILE,
};
use crate::log;

/// `<kdir>/.sha256-<hex>.tmp`: where a tree is extracted before publishing.
pub fn temp_tree(kdir: &Path, hex: &str) -> PathBuf {
    kdir.join(temp_tree_name(hex))
}

/// A complete tree for `hex` in `kdir`, current or not.
pub fn complete_tree(kdir: &Path, hex: &str) -> Option<PathBuf> {
    let t = kdir.join(tree_name(hex));
    t.join(META_FILE).is_file().then_some(t)
}

/// Write `meta.json` into the extracted `tmp`, sync, rename it into place
/// and point `current` at it. Returns the previous `current` target.
pub fn publish(
    lock: &StoreLock,
    kdir: &Path,
    tmp: &Path,
    hex: &str,
    meta: &TreeMeta,
) -> Result<Option<String>> {
    state::save(lock, &tmp.join(META_FILE), meta)?;
    syncfs(tmp)?;
    let dest = kdir.join(tree_name(hex));
    if dest.exists() {
        // Only an incomplete tree (no meta.json) can be here: complete ones
        // are reused instead of extracted again.
        fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    fs::rename(tmp, &dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    fsync_dir(kdir).with_context(|| format!("syncing {}", kdir.display()))?;
    swap_current(lock, kdir, &tree_name(hex))
}

/// Point `<kdir>/current` at `target` (a sibling name) with one rename.
pub fn swap_current(_lock: &StoreLock, kdir: &Path, target: &str) -> Result<Option<String>> {
    let link = kdir.join(CURRENT_LINK);
    let previous = fs::read_link(&link)
        .ok()
        .and_then(|t| t.to_str().map(str::to_string));
    let tmp = kdir.join(format!("{CURRENT_LINK}.tmp"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    fs::rename(&tmp, &link)
        .with_context(|| format!("renaming {} over {}", tmp.display(), link.display()))?;
    fsync_dir(kdir).with_context(|| format!("syncing {}", kdir.display()))?;
    Ok(previous.filter(|p| p != target))
}

/// Flush every file and directory of the filesystem holding `path`: one
/// call instead of an fsync per extracted file, and it reports write errors.
fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the fd is valid for the lifetime of `f`; syncfs takes no pointers.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("syncing the filesystem of {}", path.display()));
    }
    Ok(())
}

/// Leftovers of a crashed run, removed under the store lock before anything
/// else: temp trees, `current.tmp`, `.*.tmp` state files, and trees without
/// `meta.json`. Partial blobs stay, as the next download resumes from them,
/// unless untouched for a week: then no pull is coming back for them.
pub fn clean_stale(_lock: &StoreLock, store: &Store) -> Result<()> {
    let Ok(configs) = fs::read_dir(&store.root) else {
        return Ok(());
    };
    for c in configs.flatten() {
        let name = c.file_name();
        if name == "blobs" || name.to_string_lossy().starts_with('.') || !is_dir(&c.path()) {
            continue;
        }
        for k in fs::read_dir(c.path())?.flatten() {
            let kpath = k.path();
            if !is_dir(&kpath) {
                if is_temp(&k.file_name().to_string_lossy()) {
                    remove(&kpath)?;
                }
                continue;
            }
            for e in fs::read_dir(&kpath)?.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                let p = e.path();
                let stale = is_temp(&n)
                    || n == format!("{CURRENT_LINK}.tmp")
                    || (tree_hex(&n).is_some() && !p.join(META_FILE).is_file());
                if stale {
                    log::info!("removing {} left by an interrupted run", p.display());
                    remove(&p)?;
                }
            }
        }
    }
    if let Ok(blobs) = fs::read_dir(store.blobs_dir()) {
        let week_ago = SystemTime::now() - std::time::Duration::from_secs(7 * 86_400);
        for b in blobs.flatten() {
            let name = b.file_name().to_string_lossy().into_owned();
            let abandoned = name.ends_with(".partial")
                && b.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < week_ago);
            if is_temp(&name) || abandoned {
                remove(&b.path())?;
            }
        }
    }
    Ok(())
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

fn is_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn remove(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("removing {}", p.display()))
}

/// After a publish for `name`/`kver`: keep `current` and `previous` trees of
/// this kernel, this kernel's dir, `running`'s (a pull for a staged
/// kernel must not remove the tree the node runs) and the most recently
/// published other kernel's (a rollback to it then needs no pull); remove
/// the rest.
pub fn gc(
    _lock: &StoreLock,
    store: &Store,
    name: &str,
    kver: &str,
    running: &str,
    previous: Option<&str>,
) -> Result<()> {
    let kdir = store.kernel_dir(name, kver);
    let current = fs::read_link(kdir.join(CURRENT_LINK)).ok();
    for e in fs::read_dir(&kdir)?.flatten() {
        let n = e.file_name();
        let keep = current.as_deref() == Some(Path::new(&n))
            || previous.is_some_and(|p| n == p)
            || tree_hex(&n.to_string_lossy()).is_none();
        if !keep {
            log::info!("removing old tree {}", e.path().display());
            remove(&e.path())?;
        }
    }
    let mut others: Vec<(SystemTime, PathBuf)> = Vec::new();
    for e in fs::read_dir(store.config_dir(name))?.flatten() {
        let p = e.path();
        let n = e.file_name();
        if n == kver || n == running || !is_dir(&p) || n.to_string_lossy().starts_with('.') {
            continue;
        }
        let when = fs::symlink_metadata(p.join(CURRENT_LINK))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        others.push((when, p));
    }
    others.sort();
    others.pop(); // the most recent other kernel stays
    for (_, p) in others {
        log::info!(
            "removing the tree of a kernel no longer in use: {}",
            p.display()
        );
        remove(&p)?;
    }
    Ok(())
}

/// Remove the blobs of a published image (they are in the tree now).
pub fn drop_blobs(_lock: &StoreLock, store: &Store, digests: &[String]) {
    for d in digests {
        if let Ok(hex) = crate::oci::digest_hex(d) {
            let _ = fs::remove_file(store.blobs_dir().join(hex));
        }
    }
}

/// Empty the blob dir (every config of the run succeeded: nothing to resume).
pub fn clear_blobs(_lock: &StoreLock, store: &Store) -> Result<()> {
    let dir = store.blobs_dir();
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                remove(&e.path())?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    #[test]
    fn publish_swaps_current_and_gc_keeps_two() {
        // Not `tmp`: that names each temporary tree below.
        let scratch = TempDir::new("publish").unwrap();
        // Not created yet: the store creates it when it takes its lock.
        let store = Store::new(scratch.join("store"));
        let lock = store.lock().unwrap();
        let k = "6.1.0-56-amd64";
        let kdir = store.kernel_dir("sfc", k);
        let mut prev = None;
        for (i, c) in ["a", "b", "c"].iter().enumerate() {
            let hex = c.repeat(64);
            let tmp = temp_tree(&kdir, &hex);
            fs::create_dir_all(tmp.join("lib/modules").join(k)).unwrap();
            let meta = TreeMeta {
                digest: format!("sha256:{hex}"),
                ..TreeMeta::default()
            };
            prev = publish(&lock, &kdir, &tmp, &hex, &meta).unwrap();
            assert_eq!(
                store.current_tree("sfc", k),
                Some(kdir.join(tree_name(&hex)))
            );
            assert_eq!(store.current_meta("sfc", k).unwrap().unwrap(), meta);
            assert_eq!(prev.is_some(), i > 0);
            assert!(!tmp.exists());
        }
        // Other kernels' trees: the most recent one survives GC, and the
        // running kernel's (the oldest here) whatever its age.
        for (other, hex) in [
            ("4.19.0-1-amd64", "8"),
            ("5.10.0-1-amd64", "d"),
            ("6.0.0-1-amd64", "e"),
        ] {
            let od = store.kernel_dir("sfc", other);
            fs::create_dir_all(od.join(tree_name(&hex.repeat(64)))).unwrap();
            std::os::unix::fs::symlink(tree_name(&hex.repeat(64)), od.join(CURRENT_LINK)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        gc(&lock, &store, "sfc", k, "4.19.0-1-amd64", prev.as_deref()).unwrap();
        let mut left: Vec<_> = fs::read_dir(&kdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "current".to_string(),
                tree_name(&"b".repeat(64)),
                tree_name(&"c".repeat(64))
            ]
        );
        assert!(!store.kernel_dir("sfc", "5.10.0-1-amd64").exists());
        assert!(store.kernel_dir("sfc", "6.0.0-1-amd64").exists());
        assert!(store.kernel_dir("sfc", "4.19.0-1-amd64").exists());

        // Crash leftovers go; complete trees and partial blobs stay.
        fs::create_dir_all(temp_tree(&kdir, &"f".repeat(64)).join("lib")).unwrap();
        fs::create_dir_all(kdir.join(tree_name(&"9".repeat(64)))).unwrap();
        std::os::unix::fs::symlink("x", kdir.join("current.tmp")).unwrap();
        fs::create_dir_all(store.blobs_dir()).unwrap();
        fs::write(store.blobs_dir().join("ab.partial"), "p").unwrap();
        let old = File::create(store.blobs_dir().join("cd.partial")).unwrap();
        old.set_modified(SystemTime::now() - std::time::Duration::from_secs(8 * 86_400))
            .unwrap();
        drop(old);
        clean_stale(&lock, &store).unwrap();
        assert!(!store.blobs_dir().join("cd.partial").exists());
        let mut after: Vec<_> = fs::read_dir(&kdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        after.sort();
        assert_eq!(after, left);
        assert!(store.blobs_dir().join("ab.partial").exists());
    }
}
