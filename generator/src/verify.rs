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
    let status = with_agent(agent, |path| {
        // The file is closed: exec cannot meet ETXTBSY.
        std::process::Command::new(path)
            .arg("verify")
            .args(args)
            .status()
            .with_context(|| format!("running {}", path.display()))
    })?;
    std::process::exit(status.code().unwrap_or(1));
}

/// `generate --check-image`: the agent's `verify` of `layout` for each
/// (config name, node config TOML); an error with every FAIL line of the
/// first config that fails. `agent` is the binary to run when it is for
/// this machine's architecture.
pub fn check_configs(
    agent: Option<&Path>,
    layout: &Path,
    kernel: Option<&str>,
    configs: &[(&str, String)],
) -> Result<()> {
    with_agent(agent, |path| {
        for (name, toml) in configs {
            let mut args = vec![OsString::from("--oci-layout"), layout.into()];
            if let Some(k) = kernel {
                args.extend(["--kernel-release".into(), k.into()]);
            }
            let (out, text) = agent_verify(path, name, toml, &args)?;
            if !out.status.success() {
                let mut fails: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
                if fails.is_empty() {
                    fails.push(text.trim());
                }
                bail!(
                    "--check-image {}: config `{name}` fails the agent's verify, nothing was written: {}",
                    layout.display(),
                    fails.join("; ")
                );
            }
            let summary = text.lines().last().unwrap_or_default();
            eprintln!(
                "kmm-day1: --check-image {}: config `{name}`: {summary}",
                layout.display()
            );
        }
        Ok(())
    })
}

/// `generate --policy`: the agent's `verify --signatures-only` of each
/// config's image against `policy`; a warning per image a node with that
/// policy would refuse (the MachineConfig is still written: the image may
/// be signed before the rollout).
pub fn warn_policy(
    agent: Option<&Path>,
    policy: &Path,
    registries_d: Option<&Path>,
    kernel: Option<&str>,
    configs: &[(&str, String)],
) -> Result<()> {
    with_agent(agent, |path| {
        for (name, toml) in configs {
            let mut args = vec![
                OsString::from("--policy"),
                policy.into(),
                "--signatures-only".into(),
            ];
            if let Some(d) = registries_d {
                args.extend(["--registries-d".into(), d.into()]);
            }
            if let Some(k) = kernel {
                args.extend(["--kernel-release".into(), k.into()]);
            }
            let (out, text) = agent_verify(path, name, toml, &args)?;
            let line = |prefix: &str| {
                text.lines()
                    .find(|l| l.starts_with(prefix))
                    .map(|l| l[prefix.len()..].trim().to_string())
            };
            match (out.status.success(), line("ok   policy:")) {
                (true, Some(ok)) => eprintln!(
                    "kmm-day1: --policy {}: config `{name}`: {ok}",
                    policy.display()
                ),
                _ => {
                    let why = line("FAIL").unwrap_or_else(|| text.trim().to_string());
                    crate::warn(&format!(
                        "--policy {}: nodes with this policy would refuse the image of config `{name}`: {why}",
                        policy.display()
                    ));
                }
            }
        }
        Ok(())
    })
}

/// The agent at `path` verifying config `name` (its TOML written beside
/// the agent) with `args`; its exit and stdout.
fn agent_verify(
    path: &Path,
    name: &str,
    toml: &str,
    args: &[OsString],
) -> Result<(std::process::Output, String)> {
    let dir = path.parent().context("the agent's directory")?;
    let cfg = dir.join(format!("{name}.toml"));
    fs::write(&cfg, toml).with_context(|| format!("writing {}", cfg.display()))?;
    let out = std::process::Command::new(path)
        .arg("verify")
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((out, text))
}

/// Write this machine's agent (`agent` if given, else the embedded one) to
/// a private temporary directory, run `f` on its path, remove it.
fn with_agent<T>(agent: Option<&Path>, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
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
    let result = written
        .with_context(|| format!("writing the agent to {}", path.display()))
        .and_then(|()| f(&path));
    let _ = fs::remove_dir_all(&dir);
    result
}
