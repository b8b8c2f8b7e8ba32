#![no_main]
//! `registries.conf`: load, then pick endpoints for a few references.
use kmm_day1_config::ImageRef;
use kmm_day1_fuzz::{mirrors::Mirrors, scratch_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let conf = scratch_file("registries.conf", data);
    let none = conf.with_file_name("no-such-dir");
    if let Ok(m) = Mirrors::load(&conf, &none) {
        for r in ["quay.io/acme/drv:1", "registry.test:5000/a/b@sha256:0123456789012345678901234567890123456789012345678901234567890123", "docker.io/library/x"] {
            if let Ok(img) = ImageRef::parse(r) {
                let _ = m.endpoints(&img, false);
                let _ = m.insecure_for(&img.registry);
            }
        }
    }
});
