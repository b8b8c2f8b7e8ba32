//! kmm-day1-agent: runs on the node, from the units in `systemd/`.
//!
//! It is embedded in a MachineConfig, so it is small and fully static (design
//! §6): no async runtime, no container runtime, no C libraries.

/// docker-config credential files (`/var/lib/kubelet/config.json`).
mod auth;
/// Verified, resumable blob downloads into the store, from any image source.
mod blobs;
/// Command-line parsing (lexopt: clap costs ~300 KB here).
mod cli;
/// What a run acts on: kernel release, configs, store (from `cli::Common`).
mod context;
/// The hardware gate: a device of this node matches a module's alias.
mod devices;
/// Layers → the filtered module/firmware tree, with whiteouts and link checks.
mod extract;
/// The crash-loop guard: attempt records, confirmation, quarantine.
mod guard;
/// Minimal HTTP/1.1 client over TCP or rustls, with proxy support.
mod http;
/// Typed fields of parsed JSON, instead of derived `Deserialize` (size).
mod json;
/// The kernel interface `replace` uses (syscalls, /proc, /sys), behind a trait.
mod kernel;
/// Logging to the journal (native protocol) or stderr; `log::info!` & co.
mod log;
/// registries.conf mirrors, blocking and insecure registries.
mod mirrors;
/// The `.modinfo` section of module files (vermagic, srcversion, signature).
mod modinfo;
/// The node's modprobe.d and kernel command-line module options, as kmod reads them.
mod modprobe;
/// Module trees (modules.dep, softdep, alias, builtin) and /proc/modules.
mod modules;
/// Where the node is in its life: the staged OS deployment's kernels,
/// whether it has joined the cluster (the reboot decisions).
mod node;
/// sd_notify: `STATUS=` lines and `READY=1` for the Type=notify units.
mod notify;
/// The OCI image model (manifests, indexes, platforms, digests) and the
/// image-source trait; the OCI layout source.
mod oci;
/// The config's module parameters against the module's `.modinfo`.
mod params;
/// What `replace` will do: removals, load order, firmware; all refusals.
mod plan;
/// The node's image signature policy (policy.json, registries.d, cosign
/// signatures), checked before any layer of a driver image is fetched.
mod policy;
/// `pull`: fetch the driver image for the running kernel into the store.
mod pull;
/// The OCI registry client: manifests, auth, mirrors, blobs (docs/pull-http.md).
mod registry;
/// `replace`: swap in-tree modules for the stored out-of-tree ones.
mod replace;
/// SELinux: mode, labels, and the message for a refused load.
mod selinux;
/// `status`: report what the agent did and will do.
mod status;
/// The on-disk store shared by every phase: layout, lock, atomic writes,
/// publish and GC (`store/publish.rs`), state files (`store/state.rs`).
mod store;
/// Which CAs a registry's certificate is checked against.
mod tls;
/// Durations, sizes, counts and timestamps as people read them.
mod units;
/// `verify`: check an image in a temporary directory, before a rollout.
mod verify;

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, which is what
            // the journal and `systemctl status` show best.
            log::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    match cli::parse(std::env::args_os())? {
        cli::Command::Help(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Version => {
            println!("{}", cli::version());
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Pull(opts) => {
            let run = context::RunContext::from_common(&opts.common)?;
            let settings = pull::Settings::from_opts(&opts);
            if settings.staged {
                pull::run_staged(&run, &settings)
            } else {
                pull::run(&run, &settings)
            }
        }
        cli::Command::Replace(opts) => replace::run(
            &context::RunContext::from_common(&opts.common)?,
            &replace::Settings::from_opts(&opts),
        ),
        cli::Command::Status(opts) => status::run(&opts),
        cli::Command::Verify(opts) => verify::run(&opts),
        cli::Command::Confirm(opts) => guard::run_confirm(
            &context::RunContext::from_common(&opts.common)?,
            opts.config.as_deref(),
        ),
        cli::Command::Unquarantine(opts) => guard::run_unquarantine(
            &context::RunContext::from_common(&opts.common)?,
            opts.config.as_deref(),
        ),
    }
}
