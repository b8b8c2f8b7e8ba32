#![no_main]
//! `.modinfo` of an ELF module (vermagic, names), and .ko.xz/.ko.zst
//! decompression.
use std::path::Path;

use kmm_day1_fuzz::modinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = modinfo::parse(data) {
        let _ = info.vermagic_release();
    }
    if data.first() == Some(&0xfd) {
        let _ = modinfo::decompress(Path::new("m.ko.xz"), data.to_vec());
    } else if data.first() == Some(&0x28) {
        let _ = modinfo::decompress(Path::new("m.ko.zst"), data.to_vec());
    }
});
