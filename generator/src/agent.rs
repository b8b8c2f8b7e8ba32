//! The agent binary that goes into the MachineConfig.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{bail, Context, Result};

use clap::ValueEnum;

/// The node architecture an agent is built for (`--arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "aarch64")]
    Aarch64,
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/agents.rs"));
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    fn embedded(self) -> Option<&'static [u8]> {
        self.embedded_with_gzip().map(|(agent, _)| agent)
    }

    /// The embedded agent and its gzip stream (made by `build.rs`).
    fn embedded_with_gzip(self) -> Option<(&'static [u8], &'static [u8])> {
        match self {
            Arch::X86_64 => embedded::X86_64,
            Arch::Aarch64 => embedded::AARCH64,
        }
    }

    /// ELF `e_machine` of this architecture, to catch `--agent` mix-ups.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => crate::elf::EM_X86_64,
            Arch::Aarch64 => crate::elf::EM_AARCH64,
        }
    }
}

/// The agent bytes for `arch`: `--agent` if given, else the embedded one.
pub fn load(arch: Arch, path: Option<&Path>) -> Result<Cow<'static, [u8]>> {
    if let Some(p) = path {
        let bytes = std::fs::read(p)
            .with_context(|| format!("cannot read the agent binary --agent {}", p.display()))?;
        if bytes.is_empty() {
            bail!("--agent {} is empty", p.display());
        }
        // The node runs it before anything else, with no loader or library
        // to rely on: the same rule as tests/agent_static.rs, from one file.
        if let Err(why) = crate::elf::check_static_executable(&bytes, arch.elf_machine()) {
            bail!(
                "--agent {} is not a static ELF executable for --arch {}: {why}; pass the kmm-day1-agent built for {}-unknown-linux-musl (`make`)",
                p.display(),
                arch.as_str(),
                arch.as_str()
            );
        }
        return Ok(Cow::Owned(bytes));
    }
    match arch.embedded() {
        Some(b) => Ok(Cow::Borrowed(b)),
        None => bail!(
            "this kmm-day1 was built without an embedded {} agent: pass --agent PATH (a static kmm-day1-agent for {}), or build kmm-day1 with `make`, which embeds both architectures",
            arch.as_str(),
            arch.as_str()
        ),
    }
}

/// The gzip stream `build.rs` made of `data`, when `data` is an embedded agent
/// (also when `--agent` names the very file that was embedded).
pub fn precompressed(data: &[u8]) -> Option<&'static [u8]> {
    [Arch::X86_64, Arch::Aarch64]
        .into_iter()
        .filter_map(Arch::embedded_with_gzip)
        .find(|(agent, _)| *agent == data)
        .map(|(_, gz)| gz)
}

/// `--version` text: which agents this generator carries.
pub static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(long_version);

fn long_version() -> String {
    let describe = |a: Arch| match a.embedded() {
        Some(b) => format!("{} ({} bytes)", a.as_str(), b.len()),
        None => format!("{} (not embedded)", a.as_str()),
    };
    format!(
        "{} (git {}, {}); embedded agents: {}, {}",
        env!("CARGO_PKG_VERSION"),
        env!("KMM_DAY1_GIT_REV"),
        env!("KMM_DAY1_TARGET"),
        describe(Arch::X86_64),
        describe(Arch::Aarch64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_time_gzip_is_what_the_encoder_makes() {
        // Else a MachineConfig would depend on whether the agent was embedded.
        let mut checked = 0;
        for arch in [Arch::X86_64, Arch::Aarch64] {
            if let Some((agent, gz)) = arch.embedded_with_gzip() {
                assert_eq!(precompressed(agent), Some(gz));
                assert_eq!(gz, crate::gzip::gzip(agent).as_slice(), "{}", arch.as_str());
                checked += 1;
            }
        }
        assert!(
            checked == 2 || !kmm_day1_tests_full(),
            "the full suite embeds both agents"
        );
        assert_eq!(precompressed(b"not an agent"), None);
    }

    fn kmm_day1_tests_full() -> bool {
        std::env::var_os("KMM_DAY1_FULL").is_some_and(|v| v == "1")
    }
}
