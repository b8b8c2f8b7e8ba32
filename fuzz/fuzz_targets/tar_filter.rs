#![no_main]
//! The layer tar filter: an input is one layer (plain tar, or gzip/zstd by
//! its magic) extracted into a fresh dir, with small caps. Everything it
//! writes must stay in that dir: the dir's parent must hold only it.
use std::fs;

use kmm_day1_fuzz::extract::{Caps, Extractor, Filter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join(format!("kmm-day1-fuzz-tar-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let dest = root.join("tree");
    fs::create_dir_all(&dest).unwrap();
    let layer = root.join("layer");
    fs::write(&layer, data).unwrap();
    let filter = Filter {
        module_root: "/opt".into(),
        kernel: "6.1.0-1-amd64".into(),
        firmware_dir: Some("/firmware".into()),
    };
    let caps = Caps {
        max_entries: 10_000,
        max_bytes: 16 << 20,
        max_tar_bytes: 64 << 20,
    };
    let mut x = Extractor::new(&dest, &filter, caps);
    if x.apply_blob(&layer, "").is_ok() {
        let _ = x.finish();
    }
    let mut names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["layer", "tree"],
        "the tar filter wrote outside its dir"
    );
    fs::remove_dir_all(&root).unwrap();
});
