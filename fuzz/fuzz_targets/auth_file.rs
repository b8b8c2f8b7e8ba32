#![no_main]
//! docker-config auth files: load, then look up a few registries.
use kmm_day1_fuzz::{auth::AuthFiles, scratch_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = scratch_file("auth.json", data);
    if let Ok(a) = AuthFiles::load(&[p]) {
        for (reg, repo) in [
            ("quay.io", "acme/drv"),
            ("registry.test:5000", "a/b"),
            ("docker.io", "library/x"),
        ] {
            if let Some((c, _)) = a.lookup(reg, repo) {
                let _ = c.basic();
            }
        }
    }
});
