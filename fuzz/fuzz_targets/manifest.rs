#![no_main]
//! Image manifests and indexes as a registry sends them.
use kmm_day1_fuzz::parse_manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_manifest(data, None);
    let _ = parse_manifest(data, Some("application/vnd.oci.image.index.v1+json"));
});
