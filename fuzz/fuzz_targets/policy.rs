#![no_main]
//! containers-policy.json and cosign payloads: parse the input as a policy
//! and evaluate it for a few references with the input as the only
//! signature; parse the input as a signature payload.
use std::path::Path;

use kmm_day1_config::ImageRef;
use kmm_day1_fuzz::policy::{sigstore, Attachment, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sigstore::parse_payload(data);
    let text = String::from_utf8_lossy(data);
    let Ok(p) = Policy::parse(&text, Path::new("policy.json")) else {
        return;
    };
    let digest = format!("sha256:{}", "ab".repeat(32));
    for r in [
        "quay.io/acme/drv:v1",
        "registry.test:5000/a/b@sha256:abababababababababababababababababababababababababababababababab",
        "a.b.example.com/x:1",
    ] {
        let image = ImageRef::parse(r).expect("a valid reference");
        let _ = p.requirements_for(&image);
        let _ = p.check(&image, &digest, &mut || {
            Ok(Some(vec![Attachment {
                media_type: sigstore::SIGNATURE_TYPE.to_string(),
                payload: data.to_vec(),
                signature: Some("MEUCIQ==".to_string()),
            }]))
        });
    }
});
