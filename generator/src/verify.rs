//! `kmm-day1 verify …`: check a driver image on this workstation with the
//! very code a node runs. The generator embeds the static agent for both
//! architectures anyway, so it writes the one for this machine to a private
//! temporary file and runs its `verify` with the same arguments: one
//! implementation, no second copy of the pull pipeline to drift
//! (docs/status.md, "verify").

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::agent::Arch;

/// Run the agent's `verify` with `args`; exits with its exit code.
pub fn run(agent: Option<&Path>, args: &[OsString]) -> Result<()> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => Arch::X86_64,
        "aarch64" => Arch::Aarch64,
        other => bail!(
            "`verify` runs the embedded agent, which exists for x86_64 and aarch64, not {other}: run `kmm-day1-agent verify` on one of those"
        ),
    };
    let bytes = crate::agent::load(arch, agent)?;
    let dir = std::env::temp_dir().join(format!("kmm-day1-verify-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).with_context(|| {
        format!(
            "creating {} (set TMPDIR to a writable directory)",
            dir.display()
        )
    })?;
    let path = dir.join("kmm-day1-agent");
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .and_then(|mut f| f.write_all(&bytes));
    let status = written
        .with_context(|| format!("writing the agent to {}", path.display()))
        .and_then(|()| {
            // The file is closed: exec cannot meet ETXTBSY.
            std::process::Command::new(&path)
                .arg("verify")
                .args(args)
                .status()
                .with_context(|| format!("running {}", path.display()))
        });
    let _ = fs::remove_dir_all(&dir);
    let status = status?;
    std::process::exit(status.code().unwrap_or(1));
}
