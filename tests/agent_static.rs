//! The agent must be one static binary for each node architecture: it is
//! installed by Ignition into /usr/local/bin and runs before anything else,
//! with no dynamic loader or library it could depend on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::process::Command;

use kmm_day1_tests::{require_tool, static_agent};

/// (has PT_INTERP, has PT_DYNAMIC, e_machine) from the ELF program headers.
fn elf_facts(bytes: &[u8]) -> (bool, bool, u16) {
    assert!(
        bytes.len() > 64 && &bytes[..4] == b"\x7fELF",
        "not an ELF file"
    );
    assert_eq!(bytes[4], 2, "not a 64-bit ELF");
    assert_eq!(bytes[5], 1, "not little-endian");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let machine = u16_at(18);
    let phoff = u64_at(32) as usize;
    let phentsize = u16_at(54) as usize;
    let phnum = u16_at(56) as usize;
    let (mut interp, mut dynamic) = (false, false);
    for i in 0..phnum {
        match u32_at(phoff + i * phentsize) {
            2 => dynamic = true,
            3 => interp = true,
            _ => {}
        }
    }
    (interp, dynamic, machine)
}

fn check(arch: &str, machine: u16, runner: Option<&str>) {
    let Some(agent) = static_agent(arch) else {
        return;
    };
    let bytes = std::fs::read(&agent).unwrap();
    let (interp, dynamic, m) = elf_facts(&bytes);
    assert_eq!(m, machine, "{arch} agent has e_machine {m}");
    assert!(
        !interp,
        "{arch} agent asks for a dynamic loader (PT_INTERP)"
    );
    assert!(!dynamic, "{arch} agent has a dynamic section (PT_DYNAMIC)");

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
    check("x86_64", 62, None);
}

#[test]
fn aarch64_agent_is_static_and_runs_under_qemu() {
    check("aarch64", 183, Some("qemu-aarch64"));
}
