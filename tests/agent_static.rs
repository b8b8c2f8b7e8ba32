//! The agent must be one static binary for each node architecture: it is
//! installed by Ignition into /usr/local/bin and runs before anything else,
//! with no dynamic loader or library it could depend on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::process::Command;

use kmm_day1_tests::{require_tool, static_agent};

/// The generator's own rule for `--agent`: one statement of "static
/// executable for this machine", for both the build's agents and `--agent`.
#[path = "../generator/src/elf.rs"]
mod elf;

fn check(arch: &str, machine: u16, runner: Option<&str>) {
    let Some(agent) = static_agent(arch) else {
        return;
    };
    let bytes = std::fs::read(&agent).unwrap();
    if let Err(why) = elf::check_static_executable(&bytes, machine) {
        panic!(
            "{arch} agent {} is not a static executable: {why}",
            agent.display()
        );
    }

    let mut cmd = match runner {
        Some(r) => {
            if !require_tool(r) {
                return;
            }
            let mut c = Command::new(r);
            c.arg(&agent);
            c
        }
        None => Command::new(&agent),
    };
    let out = cmd.arg("--version").output().unwrap();
    assert!(out.status.success(), "{arch} --version failed: {out:?}");
    let version = String::from_utf8(out.stdout).unwrap();
    assert!(
        version.starts_with(&format!("kmm-day1-agent {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    let mut cmd = match runner {
        Some(r) => {
            let mut c = Command::new(r);
            c.arg(&agent);
            c
        }
        None => Command::new(&agent),
    };
    let out = cmd.arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for sub in ["pull", "replace", "status"] {
        assert!(
            help.contains(&format!("\n  {sub} ")),
            "{arch} --help lacks {sub}: {help}"
        );
    }
}

#[test]
fn x86_64_agent_is_static_and_runs() {
    check("x86_64", elf::EM_X86_64, None);
}

#[test]
fn aarch64_agent_is_static_and_runs_under_qemu() {
    check("aarch64", elf::EM_AARCH64, Some("qemu-aarch64"));
}
