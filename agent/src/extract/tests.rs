//! Tar filtering on layers built here with the `tar` crate's Builder. Entry
//! names are written into the raw header so that malformed names (`..`,
//! absolute) reach the extractor as a hostile layer would send them.

use super::*;
use kmm_day1_tests::scratch::TempDir;

const K: &str = "opt/lib/modules/6.1.0-1-amd64";

struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn raw(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        data: &[u8],
        link: Option<&str>,
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Regular, data.as_bytes(), None)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Directory, b"", None)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Symlink, b"", Some(target))
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Link, b"", Some(target))
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

struct Scratch(TempDir);

impl Scratch {
    fn new(tag: &str) -> Self {
        let tmp = TempDir::new(&format!("extract-{tag}")).unwrap();
        fs::create_dir(tmp.join("dest")).unwrap();
        Scratch(tmp)
    }

    fn dest(&self) -> PathBuf {
        self.0.join("dest")
    }

    fn extractor(&self, caps: Caps) -> Extractor {
        Extractor::new(
            &self.dest(),
            &Filter {
                module_root: "/opt".into(),
                kernel: "6.1.0-1-amd64".into(),
                firmware_dir: Some("/opt/lib/firmware".into()),
            },
            caps,
        )
    }

    /// Every path under dest, with `-> target` for links and `= data` for files.
    fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for e in fs::read_dir(self.dest().join(&rel)).unwrap() {
                let e = e.unwrap();
                let p = rel.join(e.file_name());
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    out.push(format!("{}/", p.display()));
                    stack.push(p);
                } else if ft.is_symlink() {
                    let t = fs::read_link(e.path()).unwrap();
                    out.push(format!("{} -> {}", p.display(), t.display()));
                } else {
                    let data = fs::read_to_string(e.path()).unwrap();
                    out.push(format!("{} = {data}", p.display()));
                }
            }
        }
        out.sort();
        out
    }
}

const CAPS: Caps = Caps {
    max_entries: 1000,
    max_bytes: 1 << 20,
    max_tar_bytes: 1 << 30,
};

fn run(s: &Scratch, layers: &[Vec<u8>]) -> Result<Summary> {
    let mut x = s.extractor(CAPS);
    for l in layers {
        x.apply(&l[..])?;
    }
    x.finish()
}

#[test]
fn keeps_only_this_kernel_and_firmware() {
    let s = Scratch::new("filter");
    let layer = Layer::new()
        .dir("opt/")
        .dir("opt/lib/")
        .file("etc/passwd", "root")
        .file(&format!("./{K}/extra/sfc.ko"), "ko")
        .file(&format!("{K}/modules.dep"), "extra/sfc.ko:\n")
        .file("opt/lib/modules/5.14.0-1/extra/sfc.ko", "other")
        .file("opt/lib/firmware/sfc/fw.bin", "fw")
        .file("opt/lib/firmwareX/not.bin", "no")
        .bytes();
    let sum = run(&s, &[layer]).unwrap();
    assert_eq!(
        s.listing(),
        [
            "firmware/",
            "firmware/sfc/",
            "firmware/sfc/fw.bin = fw",
            "lib/",
            "lib/modules/",
            "lib/modules/6.1.0-1-amd64/",
            "lib/modules/6.1.0-1-amd64/extra/",
            "lib/modules/6.1.0-1-amd64/extra/sfc.ko = ko",
            "lib/modules/6.1.0-1-amd64/modules.dep = extra/sfc.ko:\n",
        ]
    );
    assert_eq!(
        sum.kernels_seen.iter().collect::<Vec<_>>(),
        ["5.14.0-1", "6.1.0-1-amd64"]
    );
    assert_eq!((sum.files, sum.bytes, sum.entries), (3, 2 + 14 + 2, 8));
    assert!(sum.skipped.is_empty());
}

#[test]
fn dotdot_and_absolute_names_reject_the_image() {
    let s = Scratch::new("dotdot");
    let l = Layer::new()
        .file(&format!("{K}/../../../../../etc/cron.d/x"), "evil")
        .bytes();
    let e = format!("{:#}", run(&s, &[l]).unwrap_err());
    assert!(
        e.contains("contains `..`") && e.contains("etc/cron.d/x"),
        "{e}"
    );
    let l = Layer::new().file(&format!("/{K}/a.ko"), "a").bytes();
    let e = format!("{:#}", run(&s, &[l]).unwrap_err());
    assert!(e.contains("absolute path"), "{e}");
    assert!(!s.0.join("etc").exists());
}

#[test]
fn links_that_escape_are_skipped_and_inside_links_kept() {
    let s = Scratch::new("symlink");
    let l = Layer::new()
        .file(&format!("{K}/kernel/a.ko"), "a")
        .symlink(&format!("{K}/build"), "/usr/src/linux-headers")
        .symlink(&format!("{K}/rel"), "../../../../etc/passwd")
        .symlink(&format!("{K}/ok"), "kernel/a.ko")
        .symlink(&format!("{K}/kernel/abs"), &format!("/{K}/kernel/a.ko"))
        // Lexically `sub/../x/..` stays inside, but x is `.`: it escapes.
        .symlink(&format!("{K}/x"), ".")
        .symlink(&format!("{K}/sub/y"), "../x/..")
        .symlink(
            "opt/lib/firmware/fw.bin",
            "../modules/6.1.0-1-amd64/kernel/a.ko",
        )
        .bytes();
    let sum = run(&s, &[l]).unwrap();
    let list = s.listing();
    let m = "lib/modules/6.1.0-1-amd64";
    for want in [
        format!("{m}/ok -> kernel/a.ko"),
        format!("{m}/kernel/abs -> ../kernel/a.ko"),
        format!("{m}/x -> ."),
    ] {
        assert!(list.contains(&want), "{want} missing from {list:#?}");
    }
    for gone in ["build", "rel", "sub/y"] {
        assert!(
            !list.iter().any(|l| l.starts_with(&format!("{m}/{gone} "))),
            "{gone}: {list:#?}"
        );
    }
    assert!(
        !list.iter().any(|l| l.starts_with("firmware/fw.bin")),
        "{list:#?}"
    );
    assert_eq!(sum.skipped.len(), 4, "{:#?}", sum.skipped);
}

#[test]
fn link_chains_are_bounded() {
    let s = Scratch::new("chain");
    let mut l = Layer::new();
    l.symlink(&format!("{K}/l0"), ".");
    // l{i} -> l{i-1}/l{i-1}: 2^i expansions without a total bound.
    for i in 1..=60 {
        l.symlink(&format!("{K}/l{i}"), &format!("l{}/l{}", i - 1, i - 1));
    }
    l.symlink(&format!("{K}/ok"), "l3");
    let t = std::time::Instant::now();
    let sum = run(&s, &[l.bytes()]).unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    let m = s.dest().join("lib/modules/6.1.0-1-amd64");
    // l5 needs 1+2+4+8+16+32 = 63 > 40 expansions: removed, as the kernel
    // would refuse it (ELOOP); l4 needs 31 and stays.
    assert!(fs::symlink_metadata(m.join("l4")).is_ok());
    assert!(fs::symlink_metadata(m.join("l5")).is_err());
    assert!(fs::symlink_metadata(m.join("ok")).is_ok());
    assert_eq!(sum.skipped.len(), 56, "l5..l60");
}

#[test]
fn never_writes_through_a_symlink() {
    let s = Scratch::new("through");
    let victim = s.0.join("victim");
    fs::write(&victim, "safe").unwrap();
    // dest/lib/modules/<k>/f -> ../../../../victim is outside the tree.
    let l = Layer::new()
        .symlink(&format!("{K}/f"), "../../../../victim")
        .file(&format!("{K}/f"), "evil")
        .symlink(&format!("{K}/d"), ".")
        .file(&format!("{K}/d/g.ko"), "through d")
        .bytes();
    let sum = run(&s, &[l]).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "safe");
    let m = s.dest().join("lib/modules/6.1.0-1-amd64");
    assert_eq!(fs::read_to_string(m.join("f")).unwrap(), "evil");
    assert!(fs::symlink_metadata(m.join("f")).unwrap().is_file());
    assert!(!m.join("g.ko").exists());
    assert!(
        sum.skipped.iter().any(|w| w.contains("d/g.ko")),
        "{:#?}",
        sum.skipped
    );
}

#[test]
fn hard_links_only_to_extracted_files() {
    let s = Scratch::new("hardlink");
    let l = Layer::new()
        .file("etc/shadow", "secret")
        .file(&format!("{K}/kernel/a.ko"), "a")
        .hardlink(&format!("{K}/shadow"), "etc/shadow")
        .hardlink(&format!("{K}/up"), &format!("{K}/../../../../etc/shadow"))
        .hardlink(&format!("{K}/b.ko"), &format!("{K}/kernel/a.ko"))
        .bytes();
    let sum = run(&s, &[l]).unwrap();
    let m = s.dest().join("lib/modules/6.1.0-1-amd64");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(m.join("b.ko")).unwrap().ino(),
        fs::metadata(m.join("kernel/a.ko")).unwrap().ino()
    );
    assert!(!m.join("shadow").exists() && !m.join("up").exists());
    assert_eq!(sum.skipped.len(), 2, "{:#?}", sum.skipped);
}

#[test]
fn devices_and_fifos_are_skipped_with_a_warning() {
    let s = Scratch::new("dev");
    let l = Layer::new()
        .raw(&format!("{K}/null"), tar::EntryType::Char, b"", None)
        .raw(&format!("{K}/sda"), tar::EntryType::Block, b"", None)
        .raw(&format!("{K}/pipe"), tar::EntryType::Fifo, b"", None)
        .raw("dev/null", tar::EntryType::Char, b"", None)
        .file(&format!("{K}/a.ko"), "a")
        .bytes();
    let sum = run(&s, &[l]).unwrap();
    assert_eq!(
        s.listing().last().unwrap(),
        "lib/modules/6.1.0-1-amd64/a.ko = a"
    );
    assert_eq!(s.listing().len(), 4);
    assert_eq!(sum.skipped.len(), 3, "outside entries are ignored silently");
    assert!(sum.skipped[0].contains("device node") && sum.skipped[2].contains("FIFO"));
}

#[test]
fn whiteouts_and_opaque_dirs_follow_layer_order() {
    let s = Scratch::new("whiteout");
    let l1 = Layer::new()
        .file(&format!("{K}/a.ko"), "a")
        .file(&format!("{K}/b.ko"), "b")
        .file(&format!("{K}/sub/c.ko"), "c")
        .file(&format!("{K}/sub/deeper/e.ko"), "e")
        .file("opt/lib/firmware/old.bin", "old")
        .bytes();
    let l2 = Layer::new()
        .file(&format!("{K}/.wh.a.ko"), "")
        // Opaque after a sibling of the same layer: the sibling stays.
        .file(&format!("{K}/sub/d.ko"), "d")
        .file(&format!("{K}/sub/.wh..wh..opq"), "")
        .bytes();
    run(&s, &[l1.clone(), l2.clone()]).unwrap();
    let m = "lib/modules/6.1.0-1-amd64";
    assert_eq!(
        s.listing(),
        [
            "firmware/".to_string(),
            "firmware/old.bin = old".into(),
            "lib/".into(),
            "lib/modules/".into(),
            format!("{m}/"),
            format!("{m}/b.ko = b"),
            format!("{m}/sub/"),
            format!("{m}/sub/d.ko = d"),
        ]
    );
    // A whiteout of a parent of the selected dirs removes them whole, and
    // an opaque parent hides the firmware of lower layers.
    let l3 = Layer::new()
        .file("opt/lib/.wh.modules", "")
        .file(&format!("{K}/new.ko"), "new")
        .file("opt/.wh..wh..opq", "")
        .bytes();
    let s2 = Scratch::new("whiteout2");
    run(&s2, &[l1, l2, l3]).unwrap();
    assert_eq!(
        s2.listing(),
        [
            "firmware/".to_string(),
            "lib/".into(),
            "lib/modules/".into(),
            format!("{m}/"),
            format!("{m}/new.ko = new"),
        ]
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let s = Scratch::new("dup");
    let l1 = Layer::new()
        .file(&format!("{K}/a.ko"), "one")
        .file(&format!("{K}/a.ko"), "two")
        .file(&format!("{K}/x"), "file")
        .file(&format!("{K}/y/z.ko"), "z")
        .bytes();
    let l2 = Layer::new()
        .dir(&format!("{K}/x"))
        .file(&format!("{K}/x/in.ko"), "in")
        .file(&format!("{K}/y"), "now a file")
        .bytes();
    run(&s, &[l1, l2]).unwrap();
    let m = "lib/modules/6.1.0-1-amd64";
    assert_eq!(
        s.listing()[2..],
        [
            format!("{m}/"),
            format!("{m}/a.ko = two"),
            format!("{m}/x/"),
            format!("{m}/x/in.ko = in"),
            format!("{m}/y = now a file"),
        ]
    );
}

#[test]
fn caps_reject_the_image() {
    let s = Scratch::new("caps");
    let l = Layer::new()
        .file("a", "1")
        .file("b", "2")
        .file("c", "3")
        .file("d", "4")
        .bytes();
    let mut x = s.extractor(Caps {
        max_entries: 3,
        max_bytes: 100,
        ..CAPS
    });
    let e = format!("{:#}", x.apply(&l[..]).unwrap_err());
    assert!(e.contains("more than 3 tar entries"), "{e}");
    let l = Layer::new()
        .file(&format!("{K}/a.ko"), "12345")
        .file(&format!("{K}/b.ko"), "123456")
        .bytes();
    let mut x = s.extractor(Caps {
        max_entries: 100,
        max_bytes: 10,
        ..CAPS
    });
    let e = format!("{:#}", x.apply(&l[..]).unwrap_err());
    assert!(e.contains("exceed 10 bytes"), "{e}");
}

/// Bytes outside the selected dirs are read and dropped, but they count
/// against limits.max_tar_bytes across layers: a bomb there is cut off.
#[test]
fn decompressed_bytes_are_capped_across_layers_even_when_not_selected() {
    let s = Scratch::new("tarcap");
    let zeros = "0".repeat(64 << 10);
    let l = Layer::new().file("usr/big", &zeros).bytes();
    // One layer fits under twice its size; the second goes over the total.
    let cap = l.len() as u64 * 3 / 2;
    let mut x = s.extractor(Caps {
        max_tar_bytes: cap,
        ..CAPS
    });
    x.apply(&l[..]).unwrap();
    let e = format!("{:#}", x.apply(&l[..]).unwrap_err());
    assert!(
        e.contains(&format!(
            "decompress to more than {cap} bytes (limits.max_tar_bytes)"
        )),
        "{e}"
    );
    // A stream that ends exactly at the cap is fine.
    let mut x = s.extractor(Caps {
        max_tar_bytes: l.len() as u64,
        ..CAPS
    });
    x.apply(&l[..]).unwrap();
}

#[test]
fn gzip_multi_member_zstd_and_plain_layers() {
    use std::io::Write;
    let s = Scratch::new("compress");
    let tar = Layer::new()
        .file(&format!("{K}/a.ko"), "aaaa")
        .file(&format!("{K}/b.ko"), "bbbb")
        .bytes();
    // Two gzip members, split mid-tar, as pigz or concatenation produce.
    let mut gz = Vec::new();
    for part in [&tar[..700], &tar[700..]] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        gz.extend(e.finish().unwrap());
    }
    // Two zstd frames with a skippable frame between them.
    let mut zst = ruzstd::encoding::compress_to_vec(
        &tar[..1000],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    zst.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
    zst.extend(ruzstd::encoding::compress_to_vec(
        &tar[1000..],
        ruzstd::encoding::CompressionLevel::Fastest,
    ));
    for (name, data, mt) in [
        ("gz", gz, "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zst", zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("tar", tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let blob = s.0.join(name);
        fs::write(&blob, data).unwrap();
        let _ = fs::remove_dir_all(s.dest());
        fs::create_dir_all(s.dest()).unwrap();
        let mut x = s.extractor(CAPS);
        x.apply_blob(&blob, mt).unwrap();
        let sum = x.finish().unwrap();
        assert_eq!((sum.files, sum.bytes), (2, 8), "{name}");
        assert_eq!(
            fs::read_to_string(s.dest().join("lib/modules/6.1.0-1-amd64/b.ko")).unwrap(),
            "bbbb",
            "{name}"
        );
    }
    let blob = s.0.join("tar");
    let e = format!(
        "{:#}",
        s.extractor(CAPS)
            .apply_blob(&blob, "application/vnd.oci.image.layer.v1.tar+bzip2")
            .unwrap_err()
    );
    assert!(e.contains("tar+bzip2` is not supported"), "{e}");
}

/// `umoci insert` (Debian 12's umoci 0.4.7) ends its layers right after the
/// last entry's data: no padding to 512 bytes, no end-of-archive blocks.
/// That is a clean end (as for Go's archive/tar); an end anywhere inside an
/// entry is not.
#[test]
fn a_tar_without_its_footer_ends_cleanly_after_a_whole_entry() {
    let s = Scratch::new("footer");
    // "aaaa" ends 4 bytes into the last data block (padding lacking);
    // the 512-byte file ends on a block boundary (nothing lacking).
    for (last, len) in [("aaaa".to_string(), 4), ("b".repeat(512), 512)] {
        let tar = Layer::new()
            .dir(&format!("{K}/"))
            .file(&format!("{K}/a.ko"), &last)
            .bytes();
        // Header of the dir, header of the file, then its data.
        let cut = 512 + 512 + len;
        assert!(
            tar[cut..].iter().all(|&b| b == 0),
            "only padding and footer are cut"
        );
        let _ = fs::remove_dir_all(s.dest());
        fs::create_dir_all(s.dest()).unwrap();
        let sum = run(&s, &[tar[..cut].to_vec()]).unwrap();
        assert_eq!((sum.files, sum.bytes), (1, len as u64), "{len}");
        assert_eq!(
            fs::read_to_string(s.dest().join("lib/modules/6.1.0-1-amd64/a.ko")).unwrap(),
            last
        );
        // Half the footer, or only the padding, is a clean end too.
        for keep in [cut.next_multiple_of(512), cut.next_multiple_of(512) + 512] {
            let _ = fs::remove_dir_all(s.dest());
            fs::create_dir_all(s.dest()).unwrap();
            run(&s, &[tar[..keep].to_vec()]).unwrap();
        }
    }
}

#[test]
fn a_tar_cut_inside_an_entry_is_refused() {
    let s = Scratch::new("cut");
    let big = "c".repeat(1024);
    let tar = Layer::new()
        .file(&format!("{K}/a.ko"), "aaaa")
        .file("usr/skipped", &big)
        .file(&format!("{K}/b.ko"), &big)
        .bytes();
    // Offsets: a.ko header 0, data 512; usr/skipped header 1024, data
    // 1536..2560; b.ko header 2560, data 3072..4096.
    for cut in [
        100,  // inside the first header
        514,  // inside a.ko's data
        600,  // inside a.ko's padding
        1536, // after usr/skipped's header, on a block boundary: its data is missing
        2048, // inside usr/skipped's data (read past, not extracted), on a boundary
        2600, // inside b.ko's header
        3584, // inside b.ko's data, on a block boundary
        4000, // inside b.ko's data
    ] {
        let _ = fs::remove_dir_all(s.dest());
        fs::create_dir_all(s.dest()).unwrap();
        let e = run(&s, &[tar[..cut].to_vec()]).map(|_| ()).unwrap_err();
        // The image's own fault: `status` says to fix it, not to retry.
        assert!(is_defect(&e), "cut at {cut}: {e:#}");
        let e = format!("{e:#}");
        assert!(
            e.contains("the layer ends inside a tar entry") || e.contains("is truncated"),
            "cut at {cut}: {e}"
        );
    }
}
