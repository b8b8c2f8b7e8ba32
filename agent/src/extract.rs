//! Layers → the filtered tree: only `<module_root>/lib/modules/<kver>/` and
//! the configured firmware dir are written, as `lib/modules/<kver>/…` and
//! `firmware/…` under a fresh directory.
//!
//! The `tar` crate only reads entries; every file is written here, never
//! through a symlink (each parent is `lstat`ed, files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`). Policy (docs/pull.md):
//! - an entry name that is absolute or contains `..` rejects the image: no
//!   OCI tool produces one, so the layer is malformed or hostile;
//! - inside the selected dirs, device nodes, FIFOs, sockets, links that
//!   resolve outside their dir and entries under a symlinked parent are
//!   skipped with a warning: they never belong in a module tree, and once
//!   skipped they cannot do harm;
//! - everything outside the selected dirs is read past and ignored;
//! - caps on entries and bytes (`[limits]`) reject the image.
//!
//! OCI whiteouts apply in layer order: `.wh.<name>` deletes `<name>` from the
//! layers below, `.wh..wh..opq` hides everything below in its directory.

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result};

use crate::log;

/// A fault of the image itself — its layers or its module tree — as opposed
/// to the network, the registry or the node's disk. Every blob's digest has
/// matched before it is read, so the same image fails the same way on every
/// retry: `status` says to fix the image instead of retrying the pull.
#[derive(Debug)]
pub struct ImageDefect(pub String);

impl std::fmt::Display for ImageDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImageDefect {}

/// Whether `e` (or one of its causes) is an [`ImageDefect`].
pub fn is_defect(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<ImageDefect>())
}

/// `bail!` with an [`ImageDefect`].
macro_rules! defect {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::extract::ImageDefect(format!($($arg)*))))
    };
}
pub(crate) use defect;

/// An I/O error from the layer stream: the OS's (an errno: reading the
/// verified blob from disk) with `what` as context, or the layer's own (its
/// tar, gzip or zstd framing, a cap) as an [`ImageDefect`].
fn layer_io(e: io::Error, what: impl FnOnce() -> String) -> anyhow::Error {
    if e.raw_os_error().is_some() {
        anyhow::Error::new(e).context(what())
    } else {
        anyhow::Error::new(ImageDefect(format!("{}: {e}", what())))
    }
}

/// Which parts of the image to keep.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Absolute dir in the image holding `lib/modules/<kver>` (`module_root`).
    pub module_root: String,
    pub kernel: String,
    /// Absolute firmware dir in the image, if configured.
    pub firmware_dir: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub max_entries: u64,
    pub max_bytes: u64,
    /// Decompressed tar bytes read, across all layers (limits.max_tar_bytes).
    pub max_tar_bytes: u64,
}

/// What extraction saw and wrote.
#[derive(Debug, Default)]
pub struct Summary {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    /// Decompressed tar bytes read so far, selected or not.
    pub tar_bytes: u64,
    /// Names of the dirs under `<module_root>/lib/modules/` in any layer.
    pub kernels_seen: BTreeSet<String>,
    /// Entries skipped, with why (also logged as warnings).
    pub skipped: Vec<String>,
}

/// One selected dir: its path in the image and where it goes in the tree.
#[derive(Debug)]
struct Subtree {
    image: Vec<OsString>,
    dest: PathBuf,
}

/// Extraction into `dest` (a fresh, empty directory owned by this run).
#[derive(Debug)]
pub struct Extractor {
    dest: PathBuf,
    subtrees: Vec<Subtree>,
    modules_parent: Vec<OsString>,
    caps: Caps,
    summary: Summary,
    /// Hashes of dest-relative paths written by the current layer: an opaque
    /// whiteout hides only what the layers below wrote.
    this_layer: HashSet<u64>,
}

/// The supported layer media types (others are refused by name).
const LAYER_TYPES: [&str; 6] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

fn components(path: &str) -> Vec<OsString> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(OsString::from)
        .collect()
}

fn hash_path(p: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    p.hash(&mut h);
    h.finish()
}

impl Extractor {
    pub fn new(dest: &Path, filter: &Filter, caps: Caps) -> Self {
        let mut modules_parent = components(&filter.module_root);
        modules_parent.extend(["lib", "modules"].map(OsString::from));
        let mut module_tree = modules_parent.clone();
        module_tree.push(OsString::from(&filter.kernel));
        let mut subtrees = vec![Subtree {
            image: module_tree,
            dest: Path::new("lib/modules").join(&filter.kernel),
        }];
        if let Some(fw) = &filter.firmware_dir {
            subtrees.push(Subtree {
                image: components(fw),
                dest: PathBuf::from("firmware"),
            });
        }
        Extractor {
            dest: dest.to_path_buf(),
            subtrees,
            modules_parent,
            caps,
            summary: Summary::default(),
            this_layer: HashSet::new(),
        }
    }

    /// Apply one layer blob (gzip, zstd or plain tar; sniffed, with the
    /// media type checked first).
    pub fn apply_blob(&mut self, path: &Path, media_type: &str) -> Result<()> {
        if !media_type.is_empty() && !LAYER_TYPES.contains(&media_type) {
            defect!("layer media type `{media_type}` is not supported (tar, tar+gzip or tar+zstd)");
        }
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut r = BufReader::with_capacity(64 << 10, file);
        let head = r.fill_buf()?;
        if head.starts_with(&[0x1f, 0x8b]) {
            self.apply(flate2::bufread::MultiGzDecoder::new(r))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            self.apply(ZstdFrames::new(r))
        } else {
            self.apply(r)
        }
    }

    /// Apply one uncompressed layer tar.
    pub fn apply(&mut self, reader: impl Read) -> Result<()> {
        self.this_layer.clear();
        let data_end = Rc::new(Cell::new(0));
        let mut archive = tar::Archive::new(Unterminated {
            inner: Bounded {
                inner: reader,
                left: self
                    .caps
                    .max_tar_bytes
                    .saturating_sub(self.summary.tar_bytes),
                cap: self.caps.max_tar_bytes,
                read: 0,
            },
            pos: 0,
            data_end: Rc::clone(&data_end),
            pad: 0,
        });
        let tar_what = || "reading the layer tar".to_string();
        for entry in archive.entries().map_err(|e| layer_io(e, tar_what))? {
            let mut entry = entry.map_err(|e| layer_io(e, tar_what))?;
            data_end.set(entry.raw_file_position() + entry.size());
            self.summary.entries += 1;
            if self.summary.entries > self.caps.max_entries {
                defect!(
                    "the image has more than {} tar entries (limits.max_entries)",
                    self.caps.max_entries
                );
            }
            let raw = entry.path_bytes().into_owned();
            self.entry(&raw, &mut entry)?;
        }
        self.summary.tar_bytes += archive.into_inner().inner.read;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Summary> {
        self.check_links()?;
        Ok(self.summary)
    }

    fn skip(&mut self, name: &[u8], why: &str) {
        let msg = format!("skipped `{}`: {why}", String::from_utf8_lossy(name));
        log::warning!("{msg}");
        self.summary.skipped.push(msg);
    }

    fn entry<R: Read>(&mut self, raw: &[u8], entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let shown = String::from_utf8_lossy(raw);
        if raw.starts_with(b"/") {
            defect!("layer entry `{shown}` has an absolute path: the image is malformed");
        }
        let mut comps = Vec::new();
        for c in raw.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => defect!("layer entry `{shown}` contains `..`: the image is malformed"),
                c => comps.push(OsStr::from_bytes(c).to_os_string()),
            }
        }
        let Some(base) = comps.last().cloned() else {
            return Ok(()); // the root dir itself
        };
        if comps.len() > self.modules_parent.len() && comps.starts_with(&self.modules_parent) {
            let k = comps[self.modules_parent.len()].to_string_lossy();
            if !k.starts_with(".wh.") {
                self.summary.kernels_seen.insert(k.into_owned());
            }
        }
        let base = base.as_bytes();
        if let Some(hidden) = base.strip_prefix(b".wh.") {
            // `.wh.`, `.wh..` and `.wh...` would delete the parent dir or its
            // parent: no OCI tool writes them.
            if matches!(hidden, b"" | b"." | b"..") {
                defect!("layer entry `{shown}` is a whiteout of `.`, `..` or nothing: the image is malformed");
            }
            let parent = &comps[..comps.len() - 1];
            if hidden == b".wh..opq" {
                return self.opaque(parent);
            }
            let mut target = parent.to_vec();
            target.push(OsStr::from_bytes(hidden).to_os_string());
            return self.whiteout(&target);
        }
        let Some((sub, rel)) = self.map(&comps) else {
            return Ok(());
        };
        let dest_rel = self.subtrees[sub]
            .dest
            .join(rel.iter().collect::<PathBuf>());
        let kind = entry.header().entry_type();
        if rel.is_empty() && kind != tar::EntryType::Directory {
            self.skip(
                raw,
                "the module tree or firmware dir itself must be a directory",
            );
            return Ok(());
        }
        // Modules and firmware never need set-id, sticky or group/world
        // write bits; a writable dir in the store would let any local user
        // plant a module that `replace` loads as root.
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                if self.summary.bytes + size > self.caps.max_bytes {
                    defect!(
                        "the selected files of the image exceed {} bytes (limits.max_extract_bytes)",
                        self.caps.max_bytes
                    );
                }
                if !self.prepare(raw, &dest_rel, false)? {
                    return Ok(());
                }
                let path = self.dest.join(&dest_rel);
                let mut f = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(mode | 0o400)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let n = copy_with_writeback(&mut entry.take(size), &mut f)
                    .map_err(|e| layer_io(e, || format!("writing {}", path.display())))?;
                if n != size {
                    defect!("layer entry `{shown}` is truncated");
                }
                self.summary.bytes += n;
                self.summary.files += 1;
            }
            tar::EntryType::Directory => {
                if !self.prepare(raw, &dest_rel, true)? {
                    return Ok(());
                }
                let path = self.dest.join(&dest_rel);
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                    .with_context(|| format!("setting the mode of {}", path.display()))?;
            }
            tar::EntryType::Symlink => {
                let Some(target) = entry.link_name_bytes().map(|t| t.into_owned()) else {
                    self.skip(raw, "symlink without a target");
                    return Ok(());
                };
                let Some(target) = self.link_target(sub, &rel, &target) else {
                    self.skip(
                        raw,
                        "symlink pointing outside the module tree or firmware dir",
                    );
                    return Ok(());
                };
                if !self.prepare(raw, &dest_rel, false)? {
                    return Ok(());
                }
                let path = self.dest.join(&dest_rel);
                std::os::unix::fs::symlink(&target, &path)
                    .with_context(|| format!("creating symlink {}", path.display()))?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                let mapped = target.as_deref().and_then(|t| {
                    let tc = components(&String::from_utf8_lossy(t));
                    if tc.iter().any(|c| c == "..") {
                        return None;
                    }
                    let (s, r) = self.map(&tc)?;
                    Some(self.subtrees[s].dest.join(r.iter().collect::<PathBuf>()))
                });
                let Some(src_rel) = mapped.filter(|p| self.is_plain_file(p)) else {
                    self.skip(raw, "hard link to a file outside the extracted tree");
                    return Ok(());
                };
                if !self.prepare(raw, &dest_rel, false)? {
                    return Ok(());
                }
                let path = self.dest.join(&dest_rel);
                fs::hard_link(self.dest.join(&src_rel), &path)
                    .with_context(|| format!("creating hard link {}", path.display()))?;
                self.summary.files += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                self.skip(raw, "device node");
            }
            tar::EntryType::Fifo => self.skip(raw, "FIFO"),
            other => self.skip(
                raw,
                &format!(
                    "unsupported tar entry type `{}`",
                    other.as_byte().escape_ascii()
                ),
            ),
        }
        Ok(())
    }

    /// The subtree `comps` falls in, and its path inside it.
    fn map(&self, comps: &[OsString]) -> Option<(usize, Vec<OsString>)> {
        self.subtrees
            .iter()
            .position(|s| comps.starts_with(&s.image))
            .map(|i| (i, comps[self.subtrees[i].image.len()..].to_vec()))
    }

    /// Make `dest_rel`'s parents real directories (never symlinks) and clear
    /// whatever is at `dest_rel` unless both are directories. False when the
    /// entry must be skipped.
    fn prepare(&mut self, raw: &[u8], dest_rel: &Path, dir: bool) -> Result<bool> {
        let mut cur = self.dest.clone();
        let parents: Vec<_> = dest_rel
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        let mut rel = PathBuf::new();
        for c in parents {
            cur.push(c);
            rel.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    self.skip(raw, "a parent directory is a symlink or a file");
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).with_context(|| format!("creating {}", cur.display()))?;
                    self.this_layer.insert(hash_path(&rel));
                }
                Err(e) => return Err(e).with_context(|| format!("inspecting {}", cur.display())),
            }
        }
        let path = self.dest.join(dest_rel);
        self.this_layer.insert(hash_path(dest_rel));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && dir => return Ok(true),
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .with_context(|| format!("replacing {}", path.display()))?;
        if dir {
            fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        Ok(true)
    }

    fn is_plain_file(&self, rel: &Path) -> bool {
        let mut cur = self.dest.clone();
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if i + 1 == comps.len() => return m.is_file(),
                Ok(m) if m.is_dir() => {}
                _ => return false,
            }
        }
        false
    }

    /// A symlink's target as written into the tree: relative targets as
    /// they are (checked against the final tree in `check_links`), absolute
    /// ones rewritten relative when they stay inside the same subtree.
    fn link_target(&self, sub: usize, rel: &[OsString], target: &[u8]) -> Option<PathBuf> {
        if target.is_empty() {
            return None;
        }
        if !target.starts_with(b"/") {
            return Some(PathBuf::from(OsStr::from_bytes(target)));
        }
        let tc = components(&String::from_utf8_lossy(target));
        if tc.iter().any(|c| c == "..") {
            return None;
        }
        let inside = tc.strip_prefix(self.subtrees[sub].image.as_slice())?;
        let mut out = PathBuf::new();
        for _ in 1..rel.len() {
            out.push("..");
        }
        out.extend(inside);
        if out.as_os_str().is_empty() {
            out.push(".");
        }
        Some(out)
    }

    /// Whiteout of `target` (an image path): delete what lower layers put
    /// there, including a whole subtree when `target` is one of its parents.
    fn whiteout(&mut self, target: &[OsString]) -> Result<()> {
        for i in 0..self.subtrees.len() {
            let s = &self.subtrees[i];
            if s.image.starts_with(target) {
                let d = s.dest.clone();
                self.clear_lower(&d)?;
            } else if target.starts_with(&s.image) {
                let d = s
                    .dest
                    .join(target[s.image.len()..].iter().collect::<PathBuf>());
                remove_any(&self.dest.join(d))?;
            }
        }
        Ok(())
    }

    /// Opaque whiteout in `dir` (an image path).
    fn opaque(&mut self, dir: &[OsString]) -> Result<()> {
        for i in 0..self.subtrees.len() {
            let s = &self.subtrees[i];
            let d = if dir.starts_with(&s.image) {
                s.dest
                    .join(dir[s.image.len()..].iter().collect::<PathBuf>())
            } else if s.image.starts_with(dir) {
                s.dest.clone()
            } else {
                continue;
            };
            self.clear_lower(&d)?;
        }
        Ok(())
    }

    /// Remove, under `rel`, everything the current layer did not write.
    fn clear_lower(&self, rel: &Path) -> Result<()> {
        let dir = self.dest.join(rel);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for e in entries {
            let e = e?;
            let child = rel.join(e.file_name());
            if !self.this_layer.contains(&hash_path(&child)) {
                remove_any(&self.dest.join(&child))?;
            } else if e.file_type()?.is_dir() {
                self.clear_lower(&child)?;
            }
        }
        Ok(())
    }

    /// Remove every symlink in the tree that resolves outside its subtree,
    /// following links inside the tree as the kernel would.
    fn check_links(&mut self) -> Result<()> {
        for i in 0..self.subtrees.len() {
            let root = self.subtrees[i].dest.clone();
            let mut stack = vec![PathBuf::new()];
            let mut bad = Vec::new();
            while let Some(rel) = stack.pop() {
                let dir = self.dest.join(&root).join(&rel);
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries {
                    let e = e?;
                    let child = rel.join(e.file_name());
                    let ft = e.file_type()?;
                    if ft.is_dir() {
                        stack.push(child);
                    } else if ft.is_symlink()
                        && resolve_inside(&self.dest.join(&root), &child, &mut 40).is_none()
                    {
                        bad.push(child);
                    }
                }
            }
            for b in bad {
                let shown = root.join(&b);
                self.skip(
                    shown.as_os_str().as_bytes(),
                    "symlink resolving outside the module tree or firmware dir",
                );
                fs::remove_file(self.dest.join(&shown))
                    .with_context(|| format!("removing {}", shown.display()))?;
            }
        }
        Ok(())
    }
}

/// Resolve the symlink at `root/link` lexically, expanding symlinks found
/// on the way; `None` when it leaves `root`, or needs more than 40 link
/// expansions in all (the kernel's MAXSYMLINKS: such a link is unusable
/// anyway, and the total bound keeps `a -> b/b`, `b -> c/c`… from costing
/// 2^n). The result need not exist: a dangling link inside the tree is
/// harmless.
fn resolve_inside(root: &Path, link: &Path, budget: &mut u32) -> Option<Vec<OsString>> {
    *budget = budget.checked_sub(1)?;
    let target = fs::read_link(root.join(link)).ok()?;
    if target.is_absolute() {
        return None;
    }
    let mut stack: Vec<OsString> = link
        .parent()
        .map(|p| p.iter().map(OsStr::to_os_string).collect())
        .unwrap_or_default();
    for c in target.iter() {
        if c == ".." {
            stack.pop()?;
        } else if c != "." {
            stack.push(c.to_os_string());
            let here: PathBuf = stack.iter().collect();
            if fs::symlink_metadata(root.join(&here)).is_ok_and(|m| m.file_type().is_symlink()) {
                stack = resolve_inside(root, &here, budget)?;
            }
        }
    }
    Some(stack)
}

/// `io::copy`, starting the disk writeback of every 8 MiB written so that
/// the `syncfs` at publish finds little left to write (large firmware files
/// would otherwise all be flushed at the end, after decompression).
fn copy_with_writeback(src: &mut impl Read, dst: &mut File) -> io::Result<u64> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    const STEP: u64 = 8 << 20;
    let mut buf = vec![0u8; 64 << 10];
    let (mut total, mut flushed) = (0u64, 0u64);
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        total += n as u64;
        if total - flushed >= STEP {
            // SAFETY: a valid fd and plain integers; an error only means no
            // early writeback (syncfs still makes the data durable).
            unsafe {
                libc::sync_file_range(
                    dst.as_raw_fd(),
                    flushed as libc::off64_t,
                    (total - flushed) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            flushed = total;
        }
    }
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .with_context(|| format!("removing {}", path.display()))
}

/// A zstd stream of any number of frames (zstd:chunked layers have many,
/// plus skippable frames), decoded one frame at a time.
struct ZstdFrames<R: BufRead> {
    src: R,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(src: R) -> Self {
        ZstdFrames {
            src,
            dec: {
                // Bounds what a hostile frame header can make us allocate;
                // zstd up to level 19 uses at most 8 MiB.
                let mut d = ruzstd::decoding::FrameDecoder::new();
                d.set_max_window_size(32 << 20);
                d
            },
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.in_frame {
                while self.dec.can_collect() == 0 && !self.dec.is_finished() {
                    self.dec
                        .decode_blocks(
                            &mut self.src,
                            ruzstd::decoding::BlockDecodingStrategy::UptoBlocks(1),
                        )
                        .map_err(io::Error::other)?;
                }
                let n = self.dec.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            let head = self.src.fill_buf()?;
            if head.is_empty() {
                return Ok(0);
            }
            if head.len() >= 8
                && (0x50..=0x5f).contains(&head[0])
                && head[1..4] == [0x2a, 0x4d, 0x18]
            {
                let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                self.src.consume(8);
                io::copy(&mut (&mut self.src).take(u64::from(len)), &mut io::sink())?;
                continue;
            }
            self.dec
                .reset(&mut self.src)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
            self.in_frame = true;
        }
    }
}

#[cfg(test)]
mod tests;

/// A layer's decompressed tar stream, cut off once the image as a whole has
/// produced `limits.max_tar_bytes`: the download cap bounds compressed bytes
/// only, and a small gzip or zstd stream can inflate without end.
struct Bounded<R> {
    inner: R,
    left: u64,
    cap: u64,
    read: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a stream that ends exactly at the cap
            // from one that goes on.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(format!(
                    "the image's layers decompress to more than {} bytes (limits.max_tar_bytes)",
                    self.cap
                ))),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

/// A layer's tar stream that may lack its end: Debian 12's umoci 0.4.7
/// (`umoci insert`) never closes its tar writer, so its layers stop right
/// after the last entry's data, without the zero padding to 512 bytes and
/// without the two zero blocks of the end-of-archive footer. Go's
/// `archive/tar` (CRI-O, KMM) takes that as a clean end, and so do we: at
/// EOF exactly where the current entry's data ends, the missing padding is
/// supplied as zeros, and the `tar` crate then sees EOF where the next
/// header would be, which it already takes as the end. EOF anywhere else
/// inside an entry (its header, data or padding) is an error: the layer is
/// truncated, and a half file must never be taken for a whole one.
struct Unterminated<R> {
    inner: R,
    /// Bytes handed to the tar reader so far (its archive position).
    pos: u64,
    /// Where the data of the entry being read ends (set per entry).
    data_end: Rc<Cell<u64>>,
    /// Zero bytes still to supply for the padding the stream lacks.
    pad: u64,
}

impl<R: Read> Read for Unterminated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pad == 0 {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.pos += n as u64;
                return Ok(n);
            }
            let end = self.data_end.get();
            if self.pos == end && !end.is_multiple_of(512) {
                self.pad = 512 - end % 512;
            } else if self.pos < end || !self.pos.is_multiple_of(512) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the layer ends inside a tar entry (at byte {}): it is truncated or not a tar",
                        self.pos
                    ),
                ));
            } else {
                return Ok(0);
            }
        }
        let n = buf
            .len()
            .min(usize::try_from(self.pad).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.pad -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}
