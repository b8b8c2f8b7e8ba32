//! Shared by the `hostile_*` and `crash_*` tests: layer tars written byte by
//! byte (so that names, types, sizes and checksums can be anything a hostile
//! image could send: the `tar` crate's Builder refuses most of them), OCI
//! layouts written directly (index.json, manifest, config, blobs with their
//! real digests), and checks that nothing escaped the store.

// Helpers of a test crate: a failed step should panic with its error.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The external tools these tests drive (missing ones fail the full suite).
pub fn tools() -> bool {
    ["gzip", "zstd", "sha256sum"]
        .iter()
        .all(|t| kmm_day1_tests::require_tool(t))
}

/// One ustar header (GNU magic when `gnu`), checksum computed.
pub fn header(name: &[u8], kind: u8, mode: u32, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    };
    octal(&mut h, 100, 8, u64::from(mode));
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    if size < 0o77777777777 {
        octal(&mut h, 124, 12, size);
    } else {
        // GNU base-256 for sizes that do not fit 11 octal digits.
        h[124] = 0x80;
        h[124 + 4..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h, 136, 12, 1_700_000_000);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// A layer tar built entry by entry.
#[derive(Default, Clone)]
pub struct Tar(pub Vec<u8>);

impl Tar {
    pub fn new() -> Self {
        Tar::default()
    }

    pub fn entry(
        &mut self,
        name: &[u8],
        kind: u8,
        mode: u32,
        data: &[u8],
        link: &[u8],
    ) -> &mut Self {
        self.0
            .extend_from_slice(&header(name, kind, mode, data.len() as u64, link));
        self.data(data)
    }

    /// Raw data padded to the 512-byte block.
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'0', 0o644, data, b"")
    }

    pub fn file_mode(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'0', mode, data, b"")
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'5', 0o755, b"", b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'2', 0o777, b"", target.as_bytes())
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'1', 0o644, b"", target.as_bytes())
    }

    /// GNU `././@LongLink` record (`L` name, `K` link name) for the next entry.
    pub fn gnu_long(&mut self, kind: u8, value: &[u8]) -> &mut Self {
        let mut v = value.to_vec();
        v.push(0);
        self.entry(b"././@LongLink", kind, 0o644, &v, b"")
    }

    /// PAX extended header (`x`) with the given records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            // "<len> <key>=<value>\n" where len counts itself.
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while len.to_string().len() + rest != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.entry(b"./PaxHeaders/x", b'x', 0o644, &body, b"")
    }

    /// The end-of-archive marker.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

pub fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// `data` through `prog` (`gzip`, `zstd`…) with `args`.
pub fn filter(prog: &str, args: &[&str], data: Vec<u8>) -> Vec<u8> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(out.status.success(), "{prog} failed");
    out.stdout
}

/// A tar holding one regular file `name` of `size` zero bytes, compressed by
/// `prog` as it streams (the tar itself is never in memory).
pub fn zero_bomb(prog: &str, name: &str, size: u64) -> Vec<u8> {
    let mut child = Command::new(prog)
        .args(["-1", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let name = name.to_string();
    let w = std::thread::spawn(move || -> std::io::Result<()> {
        stdin.write_all(&header(name.as_bytes(), b'0', 0o644, size, b""))?;
        let block = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            stdin.write_all(&block[..n])?;
            left -= n as u64;
        }
        stdin.write_all(&vec![0u8; ((512 - size % 512) % 512) as usize + 1024])
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    w.join().unwrap().unwrap();
    out
}

/// A layer blob and its media type.
pub struct Layer {
    pub data: Vec<u8>,
    pub media_type: String,
}

impl Layer {
    pub fn tar(data: Vec<u8>) -> Self {
        Layer {
            data,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        }
    }

    pub fn gzip(tar: Vec<u8>) -> Self {
        Layer {
            data: filter("gzip", &["-c", "-n"], tar),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    pub fn zstd(tar: Vec<u8>) -> Self {
        Layer {
            data: filter("zstd", &["-c", "-q"], tar),
            media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
        }
    }
}

fn put_blob(layout: &Path, data: &[u8]) -> String {
    let hex = sha256(data);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// An OCI image layout at `layout` whose tag `tag` is an image of `layers`
/// (a fresh `index.json` each time: one tag per layout).
pub fn write_layout(layout: &Path, tag: &str, layers: &[Layer]) -> String {
    fs::create_dir_all(layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let config_digest = put_blob(layout, config.as_bytes());
    let descs: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                l.media_type,
                put_blob(layout, &l.data),
                l.data.len()
            )
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descs.join(",")
    );
    let manifest_digest = put_blob(layout, manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
        manifest.len()
    );
    fs::write(layout.join("index.json"), index).unwrap();
    manifest_digest
}

/// The driver tree every hostile image starts from: Debian's `dummy.ko` for
/// `kver` with its `modules.dep`, and one firmware file, under the default
/// `module_root` (`/opt`) and `firmware_dir = "/firmware"`.
pub fn base_layer(kver: &str, modules: &Path) -> Tar {
    let ko = fs::read(modules.join("kernel/drivers/net/dummy.ko")).unwrap();
    let m = format!("opt/lib/modules/{kver}");
    let mut t = Tar::new();
    t.dir("opt/")
        .dir("opt/lib/")
        .dir("opt/lib/modules/")
        .dir(&format!("{m}/"))
        .dir(&format!("{m}/extra/"))
        .file(&format!("{m}/extra/dummy.ko"), &ko)
        .file(&format!("{m}/modules.dep"), b"extra/dummy.ko:\n")
        .dir("firmware/")
        .dir("firmware/acme/")
        .file("firmware/acme/fw.bin", &[7u8; 3000])
        .dir("usr/")
        .file("usr/tool", b"not extracted");
    t
}

pub const CONFIG: &str = r#"
image = "registry.test/acme/drv:v1"
modules = ["dummy"]
firmware_dir = "/firmware"
"#;

/// Every path under `dir` (not following links) → a description that
/// changes when the content, type, mode or link target does.
pub fn inventory(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let desc = if ft.is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                stack.push(p.clone());
                format!("dir {:o}", m.mode())
            } else if ft.is_file() {
                format!(
                    "file {:o} {} {}",
                    m.mode(),
                    m.nlink(),
                    sha256(&fs::read(&p).unwrap())
                )
            } else {
                format!("special {:o}", m.mode())
            };
            out.insert(p, desc);
        }
    }
    out
}

/// `p` with `.` and `..` folded away without touching the filesystem
/// (`..` at the root stays at the root, as the kernel does).
pub fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The tree (`<kdir>/sha256-<hex>` or its `.sha256-<hex>.tmp`) that `p`
/// lies in, if any: store/<name>/<kver>/<tree>/…
fn tree_of(store: &Path, p: &Path) -> Option<PathBuf> {
    let rel = p.strip_prefix(store).ok()?;
    let c: Vec<_> = rel.components().collect();
    let name = c.get(2)?.as_os_str().to_string_lossy();
    (c.len() > 3 && (name.starts_with("sha256-") || name.starts_with(".sha256-")))
        .then(|| store.join(c[0]).join(c[1]).join(c[2]))
}

/// What a store may hold after a pull, by path: the lock, blobs, each
/// config's pull/replace state, and per kernel `current` (+ `.tmp`) and
/// trees whose content sits under `lib/modules/<kver>/` or `firmware/` next
/// to `meta.json`. Anything else (a `pwned` dropped by a traversal into the
/// kernel dir, say) is reported by [`store_violations`].
fn allowed_in_store(store: &Path, p: &Path, is_dir: bool) -> bool {
    let Ok(rel) = p.strip_prefix(store) else {
        return false;
    };
    let c: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let c: Vec<&str> = c.iter().map(String::as_str).collect();
    match c.as_slice() {
        [".lock"] | ["blobs"] | ["blobs", "sha256"] | ["blobs", "sha256", _] => true,
        // A config's dir and its kernel dirs: dirs, never files.
        [_name] => is_dir,
        [_name, "pull.json" | "replace.json" | "state.json"] => !is_dir,
        [_name, f] if f.starts_with('.') && f.ends_with(".tmp") => !is_dir,
        [_name, _kver] => is_dir,
        [_name, _kver, "current" | "current.tmp"] => true,
        [_name, kver, tree, rest @ ..]
            if tree.starts_with("sha256-") || tree.starts_with(".sha256-") =>
        {
            match rest {
                [] | ["meta.json"] | ["lib"] | ["lib", "modules"] | ["firmware", ..] => true,
                ["lib", "modules", k, ..] => k == kver,
                _ => false,
            }
        }
        _ => false,
    }
}

/// What a published store may hold: only the paths of
/// [`allowed_in_store`]; regular files and dirs without set-id, sticky or
/// group/world-write bits whose hard links all stay in the store; no
/// device, FIFO or socket; symlinks that are relative and whose target,
/// dangling or not, stays inside the tree they are in (the store for
/// `current`). The whole store is walked. Returns the violations.
pub fn store_violations(store: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut links: HashMap<u64, (u64, u64)> = HashMap::new();
    let store_real = fs::canonicalize(store).unwrap();
    let inv = inventory(store);
    for p in inv.keys() {
        let m = fs::symlink_metadata(p).unwrap();
        let ft = m.file_type();
        if !allowed_in_store(store, p, ft.is_dir()) {
            bad.push(format!("unexpected in the store: {}", p.display()));
        }
        if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
            bad.push(format!("special file {}", p.display()));
        }
        if !ft.is_symlink() && m.mode() & 0o7022 != 0 {
            bad.push(format!("mode {:o} on {}", m.mode(), p.display()));
        }
        if ft.is_file() && m.nlink() > 1 {
            let e = links.entry(m.ino()).or_insert((m.nlink(), 0));
            e.1 += 1;
        }
        if ft.is_symlink() {
            let target = fs::read_link(p).unwrap();
            if target.is_absolute() {
                bad.push(format!("absolute symlink {}", p.display()));
            }
            let root = tree_of(store, p).unwrap_or_else(|| store.to_path_buf());
            // Lexically, so that a dangling link is judged too.
            let lex = lexical(&p.parent().unwrap().join(&target));
            if !lex.starts_with(&root) {
                bad.push(format!(
                    "{} -> {} leaves {}",
                    p.display(),
                    target.display(),
                    root.display()
                ));
            }
            // And through the links it meets, where it resolves at all.
            if let Ok(real) = fs::canonicalize(p) {
                let root_real = fs::canonicalize(&root).unwrap_or_else(|_| store_real.clone());
                if !real.starts_with(&root_real) {
                    bad.push(format!("{} resolves to {}", p.display(), real.display()));
                }
            }
        }
    }
    for (ino, (nlink, seen)) in links {
        if nlink != seen {
            bad.push(format!(
                "inode {ino} has {nlink} links, {seen} in the store"
            ));
        }
    }
    bad
}
