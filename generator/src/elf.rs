//! Is a file a static ELF executable for a given machine?
//!
//! The agent runs from `/usr/local/bin` before anything else on the node,
//! with no dynamic loader or library it could rely on, so what the generator
//! embeds must be a static executable for the node's architecture. This file
//! is the one statement of that rule: the generator checks `--agent` with it,
//! and `tests/agent_static.rs` includes it (`#[path]`) to check the agents
//! the build makes. It uses only `core`/`std` for that reason.

use std::fmt;

/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_machine` of AArch64.
pub const EM_AARCH64: u16 = 183;

const ET_EXEC: u16 = 2;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
/// Size of the ELF64 file header, and of one ELF64 program header.
const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;

/// Why a file is not a static executable for the wanted machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStatic {
    /// No `\x7fELF` magic: a script, an archive, random bytes.
    NotElf,
    /// A 32-bit ELF file.
    Not64Bit,
    /// A big-endian ELF file (both supported machines run little-endian).
    NotLittleEndian,
    /// An ELF file of another type (`e_type`): a shared library, an object
    /// file, a core dump, or a position-independent executable.
    NotExecutable(u16),
    /// An executable for another machine.
    Machine { found: u16, wanted: u16 },
    /// The header or program headers run past the end of the file.
    Truncated,
    /// It asks for a dynamic loader (`PT_INTERP`).
    Interpreter,
    /// It has a dynamic section (`PT_DYNAMIC`): it needs relocating at load.
    Dynamic,
}

/// The name of a machine, for messages.
pub fn machine_name(m: u16) -> String {
    match m {
        EM_X86_64 => "x86_64".into(),
        EM_AARCH64 => "aarch64".into(),
        3 => "i386".into(),
        40 => "arm".into(),
        243 => "riscv".into(),
        other => format!("e_machine {other}"),
    }
}

impl fmt::Display for NotStatic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStatic::NotElf => f.write_str("it is not an ELF file (a script or data?)"),
            NotStatic::Not64Bit => f.write_str("it is a 32-bit ELF file"),
            NotStatic::NotLittleEndian => f.write_str("it is a big-endian ELF file"),
            NotStatic::NotExecutable(3) => f.write_str(
                "it is a shared object or position-independent executable (ELF type ET_DYN), not a static executable",
            ),
            NotStatic::NotExecutable(t) => {
                write!(f, "it is an ELF file of type {t}, not an executable")
            }
            NotStatic::Machine { found, wanted } => write!(
                f,
                "it is for {}, not {}",
                machine_name(*found),
                machine_name(*wanted)
            ),
            NotStatic::Truncated => f.write_str("its ELF headers are truncated"),
            NotStatic::Interpreter => {
                f.write_str("it is dynamically linked (it asks for a loader, PT_INTERP)")
            }
            NotStatic::Dynamic => {
                f.write_str("it has a dynamic section (PT_DYNAMIC), so it is not fully static")
            }
        }
    }
}

impl std::error::Error for NotStatic {}

/// `Ok` when `bytes` is a 64-bit little-endian static executable (`ET_EXEC`,
/// no `PT_INTERP`, no `PT_DYNAMIC`) for `machine`. Never panics, whatever
/// the bytes.
pub fn check_static_executable(bytes: &[u8], machine: u16) -> Result<(), NotStatic> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(NotStatic::NotElf);
    }
    let header = bytes.get(..EHDR_LEN).ok_or(NotStatic::Truncated)?;
    if header[4] != 2 {
        return Err(NotStatic::Not64Bit);
    }
    if header[5] != 1 {
        return Err(NotStatic::NotLittleEndian);
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let e_type = u16_at(header, 16);
    let found = u16_at(header, 18);
    // The machine first: "for aarch64, not x86_64" is the likelier mix-up.
    if found != machine {
        return Err(NotStatic::Machine {
            found,
            wanted: machine,
        });
    }
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&header[32..40]);
    let phoff = usize::try_from(u64::from_le_bytes(phoff)).map_err(|_| NotStatic::Truncated)?;
    let phentsize = usize::from(u16_at(header, 54));
    let phnum = usize::from(u16_at(header, 56));
    if phnum > 0 && phentsize < PHDR_LEN {
        return Err(NotStatic::Truncated);
    }
    for i in 0..phnum {
        let at = phentsize
            .checked_mul(i)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(NotStatic::Truncated)?;
        let ph = bytes
            .get(at..at.checked_add(4).ok_or(NotStatic::Truncated)?)
            .ok_or(NotStatic::Truncated)?;
        match u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) {
            PT_INTERP => return Err(NotStatic::Interpreter),
            PT_DYNAMIC => return Err(NotStatic::Dynamic),
            _ => {}
        }
    }
    // After the program headers: a dynamically linked PIE (most of
    // /usr/bin) is better described by its loader than by its type.
    if e_type != ET_EXEC {
        return Err(NotStatic::NotExecutable(e_type));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header with `phdrs` program headers of the given types.
    fn elf(machine: u16, e_type: u16, phdrs: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; EHDR_LEN + PHDR_LEN * phdrs.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&(EHDR_LEN as u64).to_le_bytes());
        b[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, t) in phdrs.iter().enumerate() {
            let at = EHDR_LEN + i * PHDR_LEN;
            b[at..at + 4].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn each_way_of_not_being_static_is_named() {
        let ok = elf(EM_X86_64, ET_EXEC, &[1, 1, 4]);
        assert_eq!(check_static_executable(&ok, EM_X86_64), Ok(()));
        let cases: Vec<(Vec<u8>, NotStatic)> = vec![
            (b"#!/bin/sh\necho hi\n".to_vec(), NotStatic::NotElf),
            (Vec::new(), NotStatic::NotElf),
            (ok[..40].to_vec(), NotStatic::Truncated),
            (
                {
                    let mut b = ok.clone();
                    b[4] = 1;
                    b
                },
                NotStatic::Not64Bit,
            ),
            (
                {
                    let mut b = ok.clone();
                    b[5] = 2;
                    b
                },
                NotStatic::NotLittleEndian,
            ),
            (
                elf(EM_AARCH64, ET_EXEC, &[1]),
                NotStatic::Machine {
                    found: EM_AARCH64,
                    wanted: EM_X86_64,
                },
            ),
            (elf(EM_X86_64, 3, &[1]), NotStatic::NotExecutable(3)),
            (elf(EM_X86_64, 1, &[]), NotStatic::NotExecutable(1)),
            (
                elf(EM_X86_64, ET_EXEC, &[1, PT_INTERP]),
                NotStatic::Interpreter,
            ),
            (
                elf(EM_X86_64, ET_EXEC, &[1, PT_DYNAMIC]),
                NotStatic::Dynamic,
            ),
            // Program headers that point past the end of the file.
            (ok[..EHDR_LEN + PHDR_LEN].to_vec(), NotStatic::Truncated),
            (
                {
                    let mut b = ok.clone();
                    b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
                    b
                },
                NotStatic::Truncated,
            ),
        ];
        for (i, (bytes, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                check_static_executable(&bytes, EM_X86_64),
                Err(want),
                "case {i}"
            );
        }
    }
}
