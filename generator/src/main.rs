//! `kmm-day1`: generate the MachineConfig (or Butane, Ignition, node config,
//! disruption policy) that installs the kmm-day1 agent, its config and its
//! units on an OpenShift node pool.

/// The agents embedded at build time (`build.rs`), and `--agent`.
mod agent;
/// Command-line interface: one clap enum, one struct per subcommand.
mod cli;
/// Whether a file is a static ELF executable (`--agent`; shared with
/// tests/agent_static.rs).
mod elf;
/// `data:` URL encoding of file contents: plain, base64 or gzip+base64.
mod encode;
/// `--rendered`: the pool's rendered MachineConfig with ours merged in.
mod fit;
/// `generate`: input → validated node config → the requested output.
mod generate;
/// The gzip encoder, shared with `build.rs`.
mod gzip;
/// The Ignition config (spec 3.2.0 / 3.4.0), files and units only.
mod ignition;
/// The input kinds: flags, a node config TOML, a KMM `Module` CR.
mod input;
/// Man pages and shell completions, from the clap definition.
mod manual;
/// The output formats built around the Ignition config.
mod output;
/// MachineConfig size thresholds (etcd and `oc apply` limits).
mod size;
/// `verify`: the embedded agent's image checks, on this machine.
mod verify;
/// Writing the result: stdout, or a file replaced atomically.
mod write;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// The names kubectl and oc look for on PATH for `kubectl kmm-day1` /
/// `oc kmm-day1` (a `-` in the command is a `_` in the file name).
const PLUGIN_NAMES: [(&str, &str); 2] = [
    ("kubectl-kmm_day1", "kubectl kmm-day1"),
    ("oc-kmm_day1", "oc kmm-day1"),
];

/// How to show the command in usage and help: the way the user typed it.
/// kubectl execs a plugin with its full path as argv[0].
fn display_name(argv0: Option<&std::ffi::OsStr>) -> String {
    let base = argv0
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .and_then(std::ffi::OsStr::to_str)
        .unwrap_or("kmm-day1");
    PLUGIN_NAMES
        .iter()
        .find(|(file, _)| *file == base)
        .map_or("kmm-day1", |(_, shown)| shown)
        .to_string()
}

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next();
    let matches = cli::Cli::command()
        .bin_name(display_name(argv0.as_deref()))
        .get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, with the whole chain: easy to read and to grep.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Each subcommand to its module.
fn run(cli: cli::Cli) -> anyhow::Result<()> {
    use cli::Command;
    match cli.command {
        Command::Generate(args) => generate::run(&args),
        Command::MachineConfig(args) => {
            if args.format != output::Format::Machineconfig {
                anyhow::bail!(
                    "`machineconfig` writes MachineConfigs only; for --format {} use `generate --format {}`",
                    generate::format_name(args.format),
                    generate::format_name(args.format)
                );
            }
            generate::run(&args)
        }
        Command::Verify { agent, args } => verify::run(agent.as_deref(), &args),
        Command::Completions { shell } => manual::completions(shell, &mut std::io::stdout().lock()),
        Command::Manpages { dir } => manual::manpages(&dir),
    }
}

/// A warning for the user, on stderr; never silenced.
fn warn(msg: &str) {
    eprintln!("warning: {}", msg.replace('\n', " "));
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    #[test]
    fn plugin_names_show_as_the_user_typed_them() {
        let name = |s: &str| super::display_name(Some(OsStr::new(s)));
        assert_eq!(name("/home/u/bin/kubectl-kmm_day1"), "kubectl kmm-day1");
        assert_eq!(name("oc-kmm_day1"), "oc kmm-day1");
        assert_eq!(name("/usr/bin/kmm-day1"), "kmm-day1");
        assert_eq!(name("kmm-day1-x86_64"), "kmm-day1");
        assert_eq!(super::display_name(None), "kmm-day1");
    }
}
