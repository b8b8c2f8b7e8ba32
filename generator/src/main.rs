//! `kmm-day1`: generate the MachineConfig (or Butane, Ignition, node config,
//! disruption policy) that installs the kmm-day1 agent, its config and its
//! units on an OpenShift node pool.

/// The agents embedded at build time (`build.rs`), and `--agent`.
mod agent;
/// Command-line interface: one clap enum, one struct per subcommand.
mod cli;
/// `data:` URL encoding of file contents: plain, base64 or gzip+base64.
mod encode;
/// `generate`: input → validated node config → the requested output.
mod generate;
/// The Ignition config (spec 3.2.0 / 3.4.0), files and units only.
mod ignition;
/// The input kinds: flags, a node config TOML, a KMM `Module` CR.
mod input;
/// The output formats built around the Ignition config.
mod output;
/// MachineConfig size thresholds (etcd and `oc apply` limits).
mod size;
/// Writing the result: stdout, or a file replaced atomically.
mod write;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, with the whole chain: easy to read and to grep.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// A warning for the user, on stderr; never silenced.
fn warn(msg: &str) {
    eprintln!("warning: {}", msg.replace('\n', " "));
}
