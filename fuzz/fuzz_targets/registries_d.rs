#![no_main]
//! registries.d files: the YAML subset, merged, then looked up.
use kmm_day1_config::ImageRef;
use kmm_day1_fuzz::policy::registries_d::Attachments;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut a = Attachments::default();
    if a.merge(text).is_ok() {
        for r in ["quay.io/acme/drv:v1", "registry.test:5000/a/b:1"] {
            let _ = a.enabled(&ImageRef::parse(r).expect("a valid reference"));
        }
    }
});
