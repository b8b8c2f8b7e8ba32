//! Hostile layers through the real pipeline: each case is an OCI layout
//! written here (Debian's `dummy.ko` in a sane first layer, the attack in
//! the next), pulled with `kmm-day1-agent pull --oci-layout`. Every case
//! asserts its outcome (the image rejected with a message naming the
//! problem, or the entry skipped with a warning naming it) and that nothing
//! escaped: the rest of the scratch tree (a canary dir with a `shadow` file
//! that absolute and `..` targets aim at, each `..` counted from where its
//! entry would land so that it reaches the canary; the config dir) is
//! unchanged; the whole store holds only the paths a store may hold, no
//! device, FIFO, set-id, sticky or group/world-writable entry, no symlink
//! whose target (dangling or not) leaves its tree and no hard link to a
//! file outside it (hostile_common::store_violations).
//! `cargo test -p kmm-day1-agent --test hostile_layers -- --nocapture`
//! prints the table (docs/reliability.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pull_common;

mod hostile_common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hostile_common::{
    base_layer, inventory, lexical, store_violations, write_layout, zero_bomb, Layer, Tar, CONFIG,
};
use pull_common::{kernel_tree, stderr, Node, TempDir};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Exit 1, nothing published, stderr has this.
    Reject(&'static str),
    /// Exit 0, published, stderr has this warning.
    Skip(&'static str),
    /// Exit 0, published, no warning needed.
    Ok,
    /// Either is acceptable (the escape checks are the point).
    Any,
}

type Check = Box<dyn Fn(&Path)>;

struct Case {
    name: &'static str,
    /// The layers after the base layer (or instead of it, with `no_base`).
    layers: Vec<Layer>,
    no_base: bool,
    limits: &'static str,
    expect: Expect,
    /// More assertions on the published tree.
    check: Option<Check>,
}

fn case(name: &'static str, expect: Expect, layers: Vec<Layer>) -> Case {
    Case {
        name,
        layers,
        no_base: false,
        limits: "",
        expect,
        check: None,
    }
}

impl Case {
    fn check(mut self, f: impl Fn(&Path) + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }
    fn limits(mut self, l: &'static str) -> Self {
        self.limits = l;
        self
    }
    fn no_base(mut self) -> Self {
        self.no_base = true;
        self
    }
}

fn tar(f: impl FnOnce(&mut Tar)) -> Layer {
    let mut t = Tar::new();
    f(&mut t);
    Layer::tar(t.finish())
}

/// How deep the tree being extracted sits below the scratch dir that holds
/// the canary: `case-N/store/drv/<kver>/.sha256-<hex>.tmp`. Its module dir
/// (`lib/modules/<kver>`) is 3 deeper, its firmware dir 1. A traversal
/// climbs exactly this far from where its entry would land, so one that got
/// through would write into `<scratch>/canary`, which the test inventories;
/// the test checks these counts against the first published tree.
const UP_TREE: usize = 5;
const UP_MODULES: usize = UP_TREE + 3;
const UP_FIRMWARE: usize = UP_TREE + 1;

/// The cases; `canary` is the absolute dir outside the store they aim at.
fn cases(kver: &str, canary: &str, modules: &Path) -> Vec<Case> {
    use Expect::*;
    let m = format!("opt/lib/modules/{kver}");
    let mk = |s: &str| s.replace("{M}", &m).replace("{C}", canary);
    // From the module dir, from the firmware dir or any other dir at the
    // tree's top (`usr/`), and from the tree itself (hard-link targets are
    // archive paths, so relative to the tree's root).
    let up_mod = "../".repeat(UP_MODULES);
    let up = "../".repeat(UP_FIRMWARE);
    let up_tree = "../".repeat(UP_TREE);
    let mut v = vec![
        case(
            "`..` in a selected dir",
            Reject("contains `..`"),
            vec![tar(|t| {
                t.file(&mk(&format!("{{M}}/{up_mod}canary/pwned")), b"PWNED");
            })],
        ),
        case(
            "`..` outside the selected dirs",
            Reject("contains `..`"),
            vec![tar(|t| {
                t.file(&format!("usr/{up}canary/pwned"), b"PWNED");
            })],
        ),
        case(
            "absolute name",
            Reject("absolute path"),
            vec![tar(|t| {
                t.file(&mk("{C}/pwned"), b"PWNED");
            })],
        ),
        case(
            "GNU long name with `..`",
            Reject("contains `..`"),
            vec![tar(|t| {
                let long = format!(
                    "firmware/{}{}{up}canary/pwned",
                    "a/".repeat(60),
                    "../".repeat(60)
                );
                t.gnu_long(b'L', long.as_bytes())
                    .file("firmware/short", b"PWNED");
            })],
        ),
        case(
            "PAX path absolute",
            Reject("absolute path"),
            vec![tar(|t| {
                t.pax(&[("path", mk("{C}/pwned").as_bytes())])
                    .file("firmware/x", b"PWNED");
            })],
        ),
        case(
            "PAX path with `..`",
            Reject("contains `..`"),
            vec![tar(|t| {
                t.pax(&[("path", format!("firmware/{up}canary/pwned").as_bytes())])
                    .file("firmware/x", b"PWNED");
            })],
        ),
        case(
            "whiteout of `..`",
            Reject("whiteout"),
            vec![tar(|t| {
                t.file("firmware/acme/.wh...", b"");
            })],
        ),
        case(
            "whiteout of `.`",
            Reject("whiteout"),
            vec![tar(|t| {
                t.file("firmware/acme/.wh..", b"");
            })],
        ),
        case(
            "empty whiteout name",
            Reject("whiteout"),
            vec![tar(|t| {
                t.file("firmware/acme/.wh.", b"");
            })],
        ),
        case(
            "truncated tar (cut mid-file)",
            Reject("layer 2/2"),
            vec![{
                let mut t = Tar::new();
                t.file("firmware/cut.bin", &[1u8; 5000]);
                let mut b = t.0;
                b.truncate(2048);
                Layer::tar(b)
            }],
        ),
        case(
            "declared size 3 GiB, 1 KiB present",
            Reject("layer 2/2"),
            vec![{
                let mut t = Tar::new();
                t.0.extend_from_slice(&hostile_common::header(
                    b"firmware/huge",
                    b'0',
                    0o644,
                    3 << 30,
                    b"",
                ));
                t.data(&[5u8; 1024]);
                Layer::tar(t.0)
            }],
        ),
        case(
            "declared size 2^62 (base-256)",
            Reject("limits.max_extract_bytes"),
            vec![{
                let mut t = Tar::new();
                t.0.extend_from_slice(&hostile_common::header(
                    b"firmware/huge",
                    b'0',
                    0o644,
                    1 << 62,
                    b"",
                ));
                t.data(&[5u8; 1024]);
                Layer::tar(t.0)
            }],
        ),
        case(
            "truncated gzip stream",
            Reject("layer 2/2"),
            vec![{
                let mut t = Tar::new();
                for i in 0..50 {
                    t.file(&format!("firmware/f{i}"), &[i as u8; 4000]);
                }
                let mut l = Layer::gzip(t.finish());
                l.data.truncate(l.data.len() / 2);
                l
            }],
        ),
        case(
            "bad header checksum",
            Reject("layer 2/2"),
            vec![{
                let mut t = Tar::new();
                t.file("firmware/x", b"data");
                t.0[148] = b'7';
                Layer::tar(t.finish())
            }],
        ),
        case(
            "garbage instead of a tar",
            Reject("layer 2/2"),
            vec![Layer::tar(
                (0..8192u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .collect(),
            )],
        ),
        case(
            "unsupported media type",
            Reject("not supported"),
            vec![Layer {
                data: Tar::new().finish(),
                media_type: "application/vnd.oci.image.layer.v1.tar+bzip2".into(),
            }],
        ),
        case(
            "gzip bomb (256 MiB of zeros, selected)",
            Reject("limits.max_extract_bytes"),
            vec![Layer {
                data: zero_bomb("gzip", "firmware/bomb", 256 << 20),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }],
        )
        .limits("max_extract_bytes = 16777216"),
        case(
            "zstd bomb (256 MiB of zeros, selected)",
            Reject("limits.max_extract_bytes"),
            vec![Layer {
                data: zero_bomb("zstd", &mk("{M}/extra/bomb.ko"), 256 << 20),
                media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
            }],
        )
        .limits("max_extract_bytes = 16777216"),
        case(
            "entry-count bomb (3000 entries)",
            Reject("limits.max_entries"),
            vec![{
                let mut t = Tar::new();
                for i in 0..3000 {
                    t.dir(&format!("usr/d{i}/"));
                }
                Layer::gzip(t.finish())
            }],
        )
        .limits("max_entries = 1000"),
        case(
            "opaque whiteout at the root",
            Reject("modules.dep: build the image"),
            vec![tar(|t| {
                t.file(".wh..wh..opq", b"");
            })],
        ),
        case(
            "whiteout of the modules dir's parent",
            Reject("modules.dep: build the image"),
            vec![tar(|t| {
                t.file("opt/lib/.wh.modules", b"");
            })],
        ),
        case(
            "module tree is a symlink to /",
            Reject("must be a directory"),
            vec![tar(|t| {
                t.dir("opt/")
                    .dir("opt/lib/")
                    .dir("opt/lib/modules/")
                    .symlink(&m, "/")
                    .file(&mk("{M}/modules.dep"), b"extra/dummy.ko:\n");
            })],
        )
        .no_base(),
        case(
            "modules.dep naming a file outside",
            Reject("outside the module tree"),
            vec![tar(|t| {
                t.file(
                    &mk("{M}/modules.dep"),
                    format!("{up_mod}canary/dummy.ko:\n").as_bytes(),
                );
            })],
        ),
        case(
            "NUL inside a GNU long name",
            Any,
            vec![tar(|t| {
                let long = format!("firmware/a\0/../{up}canary/pwned");
                t.gnu_long(b'L', long.as_bytes())
                    .file("firmware/y", b"PWNED");
            })],
        ),
        // Skipped entries: the image is fine otherwise.
        case(
            "symlink to the canary, then a file through it",
            Skip("pointing outside"),
            vec![tar(|t| {
                t.symlink("firmware/evil", canary)
                    .file("firmware/evil/pwned", b"PWNED");
            })],
        ),
        case(
            "relative symlink out, then a file through it",
            Skip("a parent directory is a symlink"),
            vec![tar(|t| {
                t.symlink("firmware/up", &format!("{up}canary"))
                    .file("firmware/up/pwned", b"PWNED");
            })],
        )
        .check(|tree| assert!(fs::symlink_metadata(tree.join("firmware/up")).is_err())),
        case(
            "symlink chain leading out",
            Skip("symlink resolving outside"),
            vec![tar(|t| {
                t.symlink("firmware/a", "b")
                    .symlink("firmware/b", "c")
                    .symlink("firmware/c", &format!("{up}canary/shadow"));
            })],
        )
        .check(|tree| {
            for l in ["a", "b", "c"] {
                assert!(
                    fs::symlink_metadata(tree.join("firmware").join(l)).is_err(),
                    "{l}"
                );
            }
        }),
        case(
            "dangling symlink leading out",
            Skip("symlink resolving outside"),
            vec![tar(|t| {
                t.symlink("firmware/gone", &format!("{up}canary/absent"));
            })],
        )
        .check(|tree| assert!(fs::symlink_metadata(tree.join("firmware/gone")).is_err())),
        case(
            "symlink loop",
            Skip("symlink resolving outside"),
            vec![tar(|t| {
                t.symlink("firmware/l1", "l2")
                    .symlink("firmware/l2", "l1")
                    .symlink("firmware/self", "self");
            })],
        ),
        case(
            "symlink to /etc/shadow",
            Skip("pointing outside"),
            vec![tar(|t| {
                t.symlink(&mk("{M}/extra/shadow.ko"), "/etc/shadow");
            })],
        ),
        case(
            "symlink from the firmware dir into the module tree",
            Skip("symlink resolving outside"),
            vec![tar(|t| {
                t.symlink("firmware/mods", &format!("../lib/modules/{kver}"));
            })],
        ),
        case(
            "symlinked dir then hard link through it",
            Skip("hard link"),
            vec![tar(|t| {
                t.symlink("firmware/l", "acme")
                    .hardlink("firmware/h", "firmware/l/fw.bin");
            })],
        ),
        case(
            "hard link to /etc/shadow",
            Skip("hard link"),
            vec![tar(|t| {
                t.hardlink(&mk("{M}/extra/h.ko"), "/etc/shadow");
            })],
        ),
        case(
            "hard link to the canary by `..`",
            Skip("hard link"),
            vec![tar(|t| {
                t.hardlink("firmware/h", &format!("{up_tree}canary/shadow"));
            })],
        ),
        case(
            "hard link to the canary by absolute path",
            Skip("hard link"),
            vec![tar(|t| {
                t.hardlink("firmware/h", &mk("{C}/shadow"));
            })],
        ),
        case(
            "hard link to a file outside the selected dirs",
            Skip("hard link"),
            vec![tar(|t| {
                t.hardlink("firmware/h", "usr/tool");
            })],
        ),
        case(
            "hard link, then a file over it",
            Ok,
            vec![tar(|t| {
                t.hardlink("firmware/h", "firmware/acme/fw.bin")
                    .file("firmware/h", b"PWNED");
            })],
        )
        .check(|tree| {
            assert_eq!(
                fs::read(tree.join("firmware/acme/fw.bin")).unwrap(),
                [7u8; 3000]
            );
            assert_eq!(fs::read(tree.join("firmware/h")).unwrap(), b"PWNED");
        }),
        case(
            "char device",
            Skip("device node"),
            vec![tar(|t| {
                t.entry(b"firmware/null", b'3', 0o666, b"", b"");
            })],
        ),
        case(
            "block device",
            Skip("device node"),
            vec![tar(|t| {
                t.entry(&mk("{M}/extra/sda").into_bytes(), b'4', 0o660, b"", b"");
            })],
        ),
        case(
            "FIFO",
            Skip("FIFO"),
            vec![tar(|t| {
                t.entry(b"firmware/fifo", b'6', 0o644, b"", b"");
            })],
        ),
        case(
            "GNU sparse entry (in a ustar header)",
            Reject("sparse entry type"),
            vec![tar(|t| {
                t.entry(b"firmware/sparse", b'S', 0o644, b"", b"");
            })],
        ),
        case(
            "unknown entry type `Z`",
            Skip("unsupported tar entry type"),
            vec![tar(|t| {
                t.entry(b"firmware/z", b'Z', 0o644, b"", b"");
            })],
        ),
        case(
            "setuid+setgid module, sticky world-writable dir",
            Ok,
            vec![tar(|t| {
                t.file_mode(&mk("{M}/extra/suid.ko"), 0o6777, b"x")
                    .entry(b"firmware/pub/", b'5', 0o1777, b"", b"")
                    .file_mode("firmware/pub/w.bin", 0o666, b"x");
            })],
        )
        .check({
            let ko = format!("lib/modules/{kver}/extra/suid.ko");
            move |tree| {
                for p in [ko.as_str(), "firmware/pub", "firmware/pub/w.bin"] {
                    let mode = fs::metadata(tree.join(p)).unwrap().mode();
                    assert_eq!(mode & 0o7022, 0, "{p}: {mode:o}");
                }
            }
        }),
        case(
            "the same file twice (later wins)",
            Ok,
            vec![tar(|t| {
                t.file("firmware/acme/fw.bin", b"first")
                    .file("firmware/acme/fw.bin", b"second");
            })],
        )
        .check(|tree| {
            assert_eq!(
                fs::read(tree.join("firmware/acme/fw.bin")).unwrap(),
                b"second"
            )
        }),
        case(
            "dir, then a file of the same name, then a dir",
            Ok,
            vec![tar(|t| {
                t.dir("firmware/x/")
                    .file("firmware/x/in", b"1")
                    .file("firmware/x", b"2")
                    .dir("firmware/y/")
                    .file("firmware/y", b"3")
                    .dir("firmware/y/");
            })],
        )
        .check(|tree| {
            assert_eq!(fs::read(tree.join("firmware/x")).unwrap(), b"2");
            assert!(tree.join("firmware/y").is_dir());
        }),
        case(
            "file under a file",
            Skip("a parent directory is a symlink or a file"),
            vec![tar(|t| {
                t.file("firmware/acme/fw.bin/x", b"PWNED");
            })],
        ),
        case(
            "opaque whiteout in the firmware dir",
            Ok,
            vec![tar(|t| {
                t.file("firmware/.wh..wh..opq", b"")
                    .file("firmware/new.bin", b"n");
            })],
        )
        .check(|tree| {
            assert!(!tree.join("firmware/acme").exists());
            assert!(tree.join("firmware/new.bin").is_file());
        }),
        case(
            "whiteouts of absent and unselected names",
            Ok,
            vec![tar(|t| {
                t.file("usr/.wh.tool", b"")
                    .file("firmware/.wh.nothing", b"")
                    .file(".wh.canary", b"");
            })],
        ),
        case(
            "whiteout, then the name again",
            Ok,
            vec![tar(|t| {
                t.file("firmware/acme/.wh.fw.bin", b"")
                    .file("firmware/acme/fw.bin", b"again");
            })],
        )
        .check(|tree| {
            assert_eq!(
                fs::read(tree.join("firmware/acme/fw.bin")).unwrap(),
                b"again"
            )
        }),
        case(
            "GNU long name (legitimate)",
            Ok,
            vec![tar(|t| {
                t.gnu_long(
                    b'L',
                    format!("firmware/{}long.bin", "d/".repeat(60)).as_bytes(),
                )
                .file("firmware/short", b"long");
            })],
        )
        .check(|tree| {
            let p = tree.join(format!("firmware/{}long.bin", "d/".repeat(60)));
            assert_eq!(fs::read(p).unwrap(), b"long");
        }),
        case(
            "PAX long name (legitimate)",
            Ok,
            vec![tar(|t| {
                t.pax(&[(
                    "path",
                    format!("firmware/{}pax.bin", "p/".repeat(60)).as_bytes(),
                )])
                .file("firmware/short", b"pax");
            })],
        )
        .check(|tree| {
            let p = tree.join(format!("firmware/{}pax.bin", "p/".repeat(60)));
            assert_eq!(fs::read(p).unwrap(), b"pax");
        }),
        case(
            "GNU long link name leading out",
            Skip("symlink resolving outside"),
            vec![tar(|t| {
                t.gnu_long(b'K', format!("{up}canary/shadow").as_bytes())
                    .symlink("firmware/lk", "x");
            })],
        ),
        case(
            "invalid UTF-8 name",
            Ok,
            vec![tar(|t| {
                t.entry(b"firmware/\xff\xfe.bin", b'0', 0o644, b"bytes", b"");
            })],
        ),
        case(
            "module tree replaced by a symlink",
            Skip("must be a directory"),
            vec![tar(|t| {
                t.symlink(&m, "/etc");
            })],
        ),
        case(
            "firmware dir replaced by a symlink to /",
            Skip("must be a directory"),
            vec![tar(|t| {
                t.symlink("firmware", "/");
            })],
        ),
        case(
            "zstd layer: symlink out, then a file through it",
            Skip("a parent directory is a symlink"),
            vec![{
                let mut t = Tar::new();
                t.symlink("firmware/up", &format!("{up}canary"))
                    .file("firmware/up/pwned", b"PWNED");
                Layer::zstd(t.finish())
            }],
        ),
        case(
            "gzip bomb outside the selected dirs",
            Ok,
            vec![Layer {
                data: zero_bomb("gzip", "usr/bomb", 64 << 20),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }],
        ),
        case(
            "gzip bomb outside the selected dirs, over limits.max_tar_bytes",
            Reject("limits.max_tar_bytes"),
            vec![Layer {
                data: zero_bomb("gzip", "usr/bomb", 64 << 20),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }],
        )
        .limits("max_tar_bytes = 33554432"),
        case(
            "zstd bomb outside the selected dirs, over limits.max_tar_bytes",
            Reject("limits.max_tar_bytes"),
            vec![Layer {
                data: zero_bomb("zstd", "usr/bomb", 64 << 20),
                media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
            }],
        )
        .limits("max_tar_bytes = 33554432"),
    ];
    for c in &mut v {
        if !c.no_base {
            let base = Layer::gzip(base_layer(kver, modules).finish());
            c.layers.insert(0, base);
        }
    }
    v
}

#[test]
fn hostile_layers_never_escape() {
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    if !hostile_common::tools() {
        return;
    }
    let s = TempDir::new("hostile").unwrap();
    let canary_dir = s.path().join("canary");
    let canary = canary_dir.to_str().unwrap().to_string();
    let outside_tmp = std::env::temp_dir();
    let tmp_before: Vec<_> = fs::read_dir(&outside_tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("pwned"))
        .collect();
    let all = cases(&kver, &canary, &modules);
    let mut aims_checked = false;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (i, c) in all.into_iter().enumerate() {
        let work = s.path().join(format!("case-{i}"));
        let mut cfg = CONFIG.to_string();
        if !c.limits.is_empty() {
            cfg.push_str(&format!("[limits]\n{}\n", c.limits));
        }
        let node = Node::new(&work, &cfg);
        fs::create_dir_all(canary_dir.join("dir")).unwrap();
        fs::write(canary_dir.join("shadow"), b"root:secret").unwrap();
        fs::write(canary_dir.join("dir/keep"), b"keep").unwrap();
        let layout = work.join("layout");
        write_layout(&layout, "v1", &c.layers);
        let mut watched = inventory(s.path());
        watched.retain(|p, _| !p.starts_with(work.join("store")) && !p.starts_with(&layout));
        let out = node.pull(&kver, &layout, None);
        let err = stderr(&out);
        let mut after = inventory(s.path());
        after.retain(|p, _| !p.starts_with(work.join("store")) && !p.starts_with(&layout));
        let mut problems = Vec::new();
        if after != watched {
            let changed: Vec<_> = after
                .iter()
                .filter(|(p, d)| watched.get(*p) != Some(d))
                .map(|(p, _)| p.display().to_string())
                .chain(
                    watched
                        .keys()
                        .filter(|p| !after.contains_key(*p))
                        .map(|p| format!("gone: {}", p.display())),
                )
                .collect();
            problems.push(format!("ESCAPE outside the store: {changed:?}"));
        }
        if work.join("store").exists() {
            problems.extend(store_violations(&work.join("store")));
        }
        let kdir = work.join("store/drv").join(&kver);
        let tree = kdir.join("current");
        let published = tree.join("meta.json").is_file();
        let leftovers: Vec<PathBuf> = fs::read_dir(&kdir)
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| p.to_string_lossy().ends_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default();
        if !leftovers.is_empty() {
            problems.push(format!("temp left: {leftovers:?}"));
        }
        let outcome = if out.status.success() {
            "published"
        } else {
            "rejected"
        };
        // The warning, or the error's last clause (its cause).
        let line = err
            .lines()
            .find(|l| l.contains("skipped") || l.contains("failed"))
            .map(|l| match l.strip_prefix("warning: ") {
                Some(w) => w.to_string(),
                None => {
                    let l = l.split_once(" failed: ").map_or(l, |(_, c)| c);
                    l.split_once("drv:v1: ").map_or(l, |(_, c)| c).to_string()
                }
            })
            .unwrap_or_default();
        match c.expect {
            Expect::Reject(msg) => {
                if out.status.success() || published {
                    problems.push("expected a rejection".into());
                }
                if !err.contains(msg) {
                    problems.push(format!("stderr lacks `{msg}`"));
                }
            }
            Expect::Skip(_) | Expect::Ok if !out.status.success() || !published => {
                problems.push("expected a published tree".into());
            }
            Expect::Skip(msg) => {
                if !err
                    .lines()
                    .any(|l| l.contains("skipped") && l.contains(msg))
                {
                    problems.push(format!("no `skipped … {msg}` warning"));
                }
            }
            Expect::Ok | Expect::Any => {}
        }
        if published && !aims_checked {
            // The traversals' counts still land in the canary from the
            // tree's dirs (the temp tree is the published one's sibling).
            let real = fs::canonicalize(&tree).unwrap();
            for (base, n) in [
                (real.join(format!("lib/modules/{kver}")), UP_MODULES),
                (real.join("firmware"), UP_FIRMWARE),
                (real.clone(), UP_TREE),
            ] {
                let aim = lexical(&base.join("../".repeat(n)).join("canary"));
                assert_eq!(
                    aim,
                    fs::canonicalize(&canary_dir).unwrap(),
                    "{n} up from {base:?}"
                );
            }
            aims_checked = true;
        }
        if published {
            if !tree
                .join(format!("lib/modules/{kver}/extra/dummy.ko"))
                .is_file()
            {
                problems.push("dummy.ko missing from the tree".into());
            }
            if let Some(check) = &c.check {
                if let Err(e) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&tree)))
                {
                    problems.push(format!("check failed: {e:?}"));
                }
            }
        }
        rows.push(format!(
            "| {} | {} | {} |",
            c.name,
            outcome,
            line.replace(&canary, "<canary>")
                .replace('\0', "\\0")
                .replace('|', "\\|")
                .chars()
                .take(160)
                .collect::<String>()
        ));
        if !problems.is_empty() {
            failures.push(format!("{}: {problems:?}\n{err}", c.name));
        }
        // The layout's blobs can be large (bombs): drop them as we go.
        let _ = fs::remove_dir_all(&layout);
    }
    let tmp_after: Vec<_> = fs::read_dir(&outside_tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("pwned"))
        .collect();
    assert_eq!(
        tmp_before, tmp_after,
        "something named pwned appeared in the temp dir"
    );
    println!("| hostile layer | outcome | agent's message |\n|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    println!(
        "{} hostile images, {} with problems",
        rows.len(),
        failures.len()
    );
    assert!(rows.len() >= 30);
    assert!(
        aims_checked,
        "no case published a tree to check the traversals' aim"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
