//! `kmm-day1-docgen DIR`: writes the agent's man page and shell completions
//! (`DIR/man8/kmm-day1-agent.8`, `DIR/bash/kmm-day1-agent`,
//! `DIR/zsh/_kmm-day1-agent`, `DIR/fish/kmm-day1-agent.fish`) for
//! `make install`.
//!
//! The agent's command line is hand-written on lexopt (clap costs ~300 KB in
//! a binary that travels inside a MachineConfig), so there is no clap
//! definition to feed `clap_mangen`. Its help constants in `agent/src/cli.rs`
//! are the reference instead: this tool compiles that file's text in and
//! parses the constants, so the man page and completions say exactly what
//! `--help` says. It reads text only (never compiles the agent's module), so
//! a change of the agent's internals cannot break it; the tests check that
//! the help lists exactly the options the parser accepts.

mod help;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The agent's CLI source, as built into this tool.
pub const CLI_SOURCE: &str = include_str!("../../../agent/src/cli.rs");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.as_slice() {
        [d] if !d.starts_with('-') => PathBuf::from(d),
        _ => {
            eprintln!("usage: kmm-day1-docgen DIR   (writes man8/, bash/, zsh/, fish/ under DIR)");
            return ExitCode::from(2);
        }
    };
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path) -> Result<(), String> {
    let agent = help::Agent::parse(CLI_SOURCE)?;
    let files = [
        ("man8/kmm-day1-agent.8", render::man(&agent)),
        ("bash/kmm-day1-agent", render::bash(&agent)),
        ("zsh/_kmm-day1-agent", render::zsh(&agent)),
        ("fish/kmm-day1-agent.fish", render::fish(&agent)),
    ];
    for (rel, text) in files {
        write_atomic(&dir.join(rel), text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", dir.join(rel).display()))?;
    }
    Ok(())
}

/// Temp file in the same directory, fsync, rename: never half a man page.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
