//! Helpers shared by the integration tests.
//!
//! The README's test command (`make test`) sets `KMM_DAY1_FULL=1` after
//! installing every tool the tests use; then a missing tool is a failure.
//! A plain `cargo test` on a workstation skips those tests with a message.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Reading docs/*.md: code blocks, links, anchors, command lines.
pub mod docs;
/// Images built with umoci.
pub mod image;
/// Debian's cached kernel module tree (tests/setup.d/20-kernel-tree.sh).
pub mod kernel_tree;
/// Loopback servers and ports.
pub mod net;
/// A real registry (docker-registry, umoci, skopeo) for tests.
pub mod registry;
/// Scratch directories removed on drop.
pub mod scratch;

/// True when the full suite is running and every external tool must exist.
pub fn full_suite() -> bool {
    std::env::var_os("KMM_DAY1_FULL").is_some_and(|v| v == "1")
}

/// Whether `tool` is on PATH. In the full suite its absence panics, so a
/// missing install step fails CI instead of silently skipping a test.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
    if !found {
        assert!(
            !full_suite(),
            "`{tool}` is not installed; the test command must install it"
        );
        eprintln!("skipping: `{tool}` is not installed (run `make test` for the full suite)");
    }
    found
}

/// The static agent for `arch` (`x86_64` or `aarch64`) built by `make test`,
/// from `KMM_DAY1_AGENT_X86_64` / `KMM_DAY1_AGENT_AARCH64`.
pub fn static_agent(arch: &str) -> Option<PathBuf> {
    let var = format!("KMM_DAY1_AGENT_{}", arch.to_ascii_uppercase());
    let path = std::env::var_os(&var).map(PathBuf::from);
    match &path {
        Some(p) if p.is_file() => path,
        _ => {
            assert!(
                !full_suite(),
                "{var} must name the built static agent in the full suite"
            );
            eprintln!("skipping: {var} is not set (run `make test` for the full suite)");
            None
        }
    }
}

/// The workspace root (tests may read `../shared/reference` next to it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// `../shared/reference/<file>` next to the checkout.
pub fn shared_reference(file: &str) -> PathBuf {
    workspace_root().join("../shared/reference").join(file)
}

/// Run `cmd` with no stdin; its stdout, or an error naming the command, its
/// exit status and its stderr.
pub fn try_run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `cmd`, which must succeed (a test step: failure panics with stderr);
/// its stdout.
pub fn run(cmd: &mut Command) -> String {
    try_run(cmd).unwrap_or_else(|e| panic!("{e:#}"))
}
