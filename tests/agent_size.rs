//! The static agents stay within the size budget written in docs/size.md.
//!
//! The agent travels inside a MachineConfig as base64 of a gzip stream, and
//! the generator refuses a MachineConfig above 1.25 MiB. This guard fails as
//! soon as a change grows the agent past its budget, with the numbers, so the
//! commit that grows it is the one that sees it, not a cluster later.
//! The embedded size is computed the way `generator/src/encode.rs` makes it:
//! zopfli in gzip format with 2 iterations, then padded standard base64.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::num::NonZeroU64;

use kmm_day1_tests::static_agent;

/// Budget of one architecture's agent, in bytes.
struct Budget {
    arch: &'static str,
    /// The release binary as built (the profile strips it).
    binary: usize,
    /// Its base64(gzip) form, as it sits in the MachineConfig.
    embedded: usize,
}

/// Measured sizes plus ~3% (docs/size.md, "The CI size guard"); either
/// embedded budget plus the rest of a MachineConfig (~4 KB) stays under the
/// generator's 1.25 MiB limit. A change that shrinks the agent lowers them.
const BUDGETS: [Budget; 2] = [
    Budget {
        arch: "x86_64",
        binary: 1_473_500,
        embedded: 1_079_000,
    },
    Budget {
        arch: "aarch64",
        binary: 1_222_500,
        embedded: 1_078_500,
    },
];

/// The agent's gzip stream as the generator makes it.
fn gzip_stream(binary: &[u8]) -> Vec<u8> {
    let options = zopfli::Options {
        iteration_count: NonZeroU64::MIN.saturating_add(1),
        ..zopfli::Options::default()
    };
    let mut gz = Vec::with_capacity(binary.len() / 2);
    zopfli::compress(options, zopfli::Format::Gzip, binary, &mut gz).unwrap();
    gz
}

/// Length of the agent as the generator embeds it: the padded base64 text
/// of its gzip stream.
fn embedded_len(binary: &[u8]) -> usize {
    gzip_stream(binary).len().div_ceil(3) * 4
}

/// True when the ELF file still has a symbol table: the size of an
/// unstripped binary says nothing about what ships.
fn has_symtab(elf: &[u8]) -> bool {
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at =
        |o: usize| usize::try_from(u64::from_le_bytes(elf[o..o + 8].try_into().unwrap())).unwrap();
    let (shoff, shentsize, shnum) = (u64_at(40), u16_at(58), u16_at(60));
    // SHT_SYMTAB = 2
    (0..shnum).any(|i| u32_at(shoff + i * shentsize + 4) == 2)
}

fn check(budget: &Budget) {
    let Some(agent) = static_agent(budget.arch) else {
        return;
    };
    let binary = std::fs::read(&agent).unwrap();
    assert!(
        binary.len() > 64 && &binary[..4] == b"\x7fELF" && binary[4] == 2,
        "{} is not a 64-bit ELF file",
        agent.display()
    );
    assert!(
        !has_symtab(&binary),
        "the {} agent {} is not stripped: build it with `make agents`",
        budget.arch,
        agent.display()
    );
    let embedded = embedded_len(&binary);
    eprintln!(
        "{} agent: binary {} bytes (budget {}), embedded {} bytes (budget {})",
        budget.arch,
        binary.len(),
        budget.binary,
        embedded,
        budget.embedded
    );
    let hint = "see docs/size.md: was it built by `make agents` (nightly build-std) \
                rather than plain `cargo build` on stable, or did a dependency or \
                feature grow it (`cargo bloat`)?";
    assert!(
        binary.len() <= budget.binary,
        "the {} agent is {} bytes, over its budget of {} bytes by {}; {hint}",
        budget.arch,
        binary.len(),
        budget.binary,
        binary.len() - budget.binary
    );
    assert!(
        embedded <= budget.embedded,
        "the {} agent takes {} bytes in a MachineConfig (base64 of gzip), over its budget of {} bytes by {}; {hint}",
        budget.arch,
        embedded,
        budget.embedded,
        embedded - budget.embedded
    );
}

#[test]
fn x86_64_agent_fits_its_size_budget() {
    check(&BUDGETS[0]);
}

#[test]
fn aarch64_agent_fits_its_size_budget() {
    check(&BUDGETS[1]);
}

#[test]
fn the_measured_stream_is_gzip_that_gunzips_to_the_input() {
    // What Ignition does with `compression: gzip`, done by gzip(1): the
    // figure the budget is checked against is a real, complete stream.
    if !kmm_day1_tests::require_tool("gzip") {
        return;
    }
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(i) % 251) as u8)
        .collect();
    let gz = gzip_stream(&data);
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &gz));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -dc rejected the stream");
    assert!(out.stdout == data, "gzip -dc gave other bytes back");
    assert!(embedded_len(&data) < data.len(), "the sample must compress");
}
