//! The agent's parser modules, compiled from the agent's own sources (the
//! agent is a binary crate; a lib+bin split would change its build for
//! fuzzing's sake). Only what the fuzz targets call needs to be reachable.
#![allow(dead_code, unused_imports, clippy::all)]

#[path = "../../agent/src/log.rs"]
pub mod log;
#[path = "../../agent/src/modinfo.rs"]
pub mod modinfo;
#[path = "../../agent/src/modules.rs"]
pub mod modules;
// modules::check_tree checks configured parameters with it.
#[path = "../../agent/src/params.rs"]
pub mod params;
#[path = "../../agent/src/mirrors.rs"]
pub mod mirrors;
#[path = "../../agent/src/auth.rs"]
pub mod auth;
#[path = "../../agent/src/extract.rs"]
pub mod extract;
#[path = "../../agent/src/tls.rs"]
pub mod tls;
#[path = "../../agent/src/http.rs"]
pub mod http;
#[path = "../../agent/src/json.rs"]
pub mod json;
#[path = "../../agent/src/oci/mod.rs"]
pub mod oci;
#[path = "../../agent/src/registry.rs"]
pub mod registry;
#[path = "../../agent/src/policy/mod.rs"]
pub mod policy;

/// A scratch file for parsers that read a path: one per process (libFuzzer
/// runs one input at a time per process).
pub fn scratch_file(name: &str, data: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kmm-day1-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(name);
    std::fs::write(&p, data).expect("writing the fuzz scratch file");
    p
}

/// The manifest/index parser both image sources use (crate-private in the
/// agent): whether `bytes` parse, with an optional Content-Type.
pub fn parse_manifest(bytes: &[u8], header_type: Option<&str>) -> bool {
    oci::manifest_parses(bytes, header_type)
}
