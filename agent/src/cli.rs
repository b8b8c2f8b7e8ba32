//! The agent's command line. Hand-rolled on lexopt to keep the binary small;
//! the help texts are the reference for every option.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use kmm_day1_config::{CONFIG_DIR, STORE_DIR};

/// Options every subcommand takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub config_dir: PathBuf,
    pub store: PathBuf,
    /// Overrides `uname -r`.
    pub kernel_release: Option<String>,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            config_dir: PathBuf::from(CONFIG_DIR),
            store: PathBuf::from(STORE_DIR),
            kernel_release: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullOpts {
    pub common: Common,
    /// Never reboot, whatever `after_pull` says (tests, manual runs).
    pub no_reboot: bool,
    /// Take the image from this OCI image layout instead of the registry.
    pub oci_layout: Option<PathBuf>,
    /// Pull for the staged OS deployment's kernels (never reboots).
    pub staged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplaceOpts {
    pub common: Common,
    /// Print the plan, touch nothing.
    pub dry_run: bool,
    pub json: bool,
    /// A directory holding `<kernel>/modules.dep` that stands in for the
    /// store's tree (dry runs on any module tree).
    pub modules_root: Option<PathBuf>,
    /// Hidden (tests): a directory holding `<kernel>/modules.dep` that stands
    /// in for the host's `/lib/modules`.
    pub host_modules_root: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusOpts {
    pub common: Common,
    pub json: bool,
    /// Hidden (tests): stands in for `/sys` (its `module/<m>/srcversion`).
    pub sys_root: Option<PathBuf>,
}

/// `confirm` and `unquarantine`: the crash-loop guard by hand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuardOpts {
    pub common: Common,
    /// Only this config (`--config NAME`); default: every config.
    pub config: Option<String>,
}

/// `verify`: check an image on any machine, before a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyOpts {
    pub image: Option<String>,
    pub oci_layout: Option<PathBuf>,
    /// Check only this kernel's tree; default: every tree the image has.
    pub kernel_release: Option<String>,
    /// Modules that must be in the tree (`--module`, repeatable).
    pub modules: Vec<String>,
    /// A node config: image, modules, module_root, firmware_dir, pull options.
    pub config: Option<PathBuf>,
    /// The image's module root (`module_root`), default `/opt`.
    pub module_root: Option<String>,
    /// The image's firmware dir (`firmware_dir`), default `/firmware`.
    pub firmware_dir: Option<String>,
    /// Plain HTTP to the image's registry.
    pub insecure: bool,
    /// Retry budget against the registry, seconds (`--retry-for`; default
    /// `verify::RETRY_FOR_SECS`).
    pub retry_for: Option<u64>,
    /// The signature policy to check the image against (`--policy`;
    /// default: this machine's `/etc/containers/policy.json` if any).
    pub policy: Option<PathBuf>,
    /// registries.d for `use-sigstore-attachments` (`--registries-d`).
    pub registries_d: Option<PathBuf>,
    /// Stop after the signature check (`--signatures-only`): no layers.
    pub signatures_only: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help(&'static str),
    Version,
    Pull(PullOpts),
    Replace(ReplaceOpts),
    Status(StatusOpts),
    Verify(VerifyOpts),
    Confirm(GuardOpts),
    Unquarantine(GuardOpts),
}

pub const MAIN_HELP: &str = "\
kmm-day1-agent: swap in-tree kernel modules for out-of-tree ones from a KMM driver image

Usage: kmm-day1-agent <COMMAND> [OPTIONS]

Commands:
  pull      Fetch the driver image for the running kernel into the store (kmm-day1-pull.service)
  replace   Remove the in-tree modules and load the stored ones (kmm-day1-replace.service)
  status    Show what was pulled and loaded, and what happens next
  verify    Check a driver image (module trees, modules.dep, vermagic, firmware, signatures)
  confirm   Mark this boot's swap healthy (the crash-loop guard's health point)
  unquarantine
            Let a quarantined tree be loaded again at the next swap

Options:
  -h, --help     Print help (also after a command)
  -V, --version  Print version

Configs are read from /etc/kmm-day1/*.toml; state lives in /var/lib/kmm-day1.
";

const COMMON_HELP: &str = "
Common options:
      --config-dir DIR       Node configs to read [default: /etc/kmm-day1]
      --store DIR            Store root [default: /var/lib/kmm-day1]
      --kernel-release REL   Act for this kernel instead of `uname -r`
  -h, --help                 Print help
";

pub const PULL_HELP: &str = "\
Fetch the driver image for the running kernel, verify every blob, extract the module tree
and firmware into the store, then act on `after_pull` (reboot by default).

Usage: kmm-day1-agent pull [OPTIONS]

Options:
      --no-reboot            Never reboot, whatever the config says
      --staged               Pull for the kernels of the OS deployment rpm-ostree staged for
                             the next boot instead (kmm-day1-pull-staged.service, at
                             shutdown); never reboots
      --oci-layout DIR       Take the image from this OCI image layout (its tag or digest)
                             instead of the registry (air-gapped nodes, tests)
";

pub const REPLACE_HELP: &str = "\
Remove the in-tree modules and load the out-of-tree ones from the store, with their
dependencies and parameters; on any failure, put the in-tree modules back.

Usage: kmm-day1-agent replace [OPTIONS]

Options:
      --dry-run              Print the plan; change nothing (no root needed). Exit code as
                             `status`'s (at least 1 when a plan cannot be made)
      --json                 Print the plan as JSON (with --dry-run)
      --modules-root DIR     Plan from DIR/<kernel>/modules.dep instead of the store
";

pub const STATUS_HELP: &str = "\
Show, per config, the image and digest, the store state, the loaded modules, the last
pull and replace results, and the next action. Exit code: 0 ok, 1 degraded, 2 failed,
3 no config at all (nothing set up on this node).

Usage: kmm-day1-agent status [OPTIONS]

Options:
      --json                 Machine-readable output (stable, documented)
";

pub const VERIFY_HELP: &str = "\
Check a driver image before any node reboots for it: pull it (or read an OCI layout) into a
temporary directory, never the store, and check each kernel's module tree: modules.dep
consistent, the modules present, vermagic, firmware files, signatures. One line per check
(ok / FAIL / warn); exit 1 on any FAIL. No root needed.

Usage: kmm-day1-agent verify --image REF [OPTIONS]

Options:
      --image REF            The driver image (tag or digest)
      --oci-layout DIR       Read the image from this OCI image layout instead of a registry
      --kernel-release REL   Check only this kernel's tree [default: every tree in the image]
      --module NAME          A module that must be in the tree (repeatable)
      --config FILE          Take image, modules, parameters, module_root, firmware_dir
                             and pull options from a node config (--image/--module
                             override)
      --module-root DIR      Where the image keeps lib/modules [default: /opt]
      --firmware-dir DIR     The image's firmware dir [default: /firmware]
      --insecure             Plain HTTP to the image's registry
      --retry-for SECS       Retry an unreachable or failing registry for up to SECS seconds
                             [default: 20; a node's pull retries for 14 minutes]
      --policy FILE          Check the image's signatures against this containers-policy.json
                             [default: /etc/containers/policy.json, when it exists]
      --registries-d DIR     Where use-sigstore-attachments is set for --policy
                             [default: /etc/containers/registries.d]
      --signatures-only      Stop after the signature check (no layer is downloaded)
  -h, --help                 Print help
";

pub const CONFIRM_HELP: &str = "\
Mark this boot healthy for the crash-loop guard: for each config whose out-of-tree modules
this boot's replace loaded and that still run, the count of unconfirmed boots is reset.
kmm-day1-pull.service does this when it starts; with `[replace] confirm = \"command\"` only
this command does (run it from a unit ordered after what proves the driver works).
Exit 1 when a config's modules were loaded this boot but no longer run.

Usage: kmm-day1-agent confirm [OPTIONS]

Options:
      --config NAME          Only this config [default: every config]
";

pub const UNQUARANTINE_HELP: &str = "\
Forget the crash-loop guard's record of a config, so the next swap (the next boot, or
`systemctl restart kmm-day1-replace`) loads its tree again with a fresh count. A new image
digest or a changed config needs no unquarantine: it is tried again by itself.

Usage: kmm-day1-agent unquarantine [OPTIONS]

Options:
      --config NAME          Only this config [default: every config]
";

/// The full help text of a subcommand: its own part, then the common options.
pub fn help(sub: &str) -> String {
    if sub == "verify" {
        return VERIFY_HELP.to_string();
    }
    let own = match sub {
        "pull" => PULL_HELP,
        "replace" => REPLACE_HELP,
        "status" => STATUS_HELP,
        "confirm" => CONFIRM_HELP,
        "unquarantine" => UNQUARANTINE_HELP,
        _ => return MAIN_HELP.to_string(),
    };
    format!("{own}{COMMON_HELP}")
}

/// `kmm-day1-agent 0.1.0 (git 267a9e9, x86_64-unknown-linux-musl)`: which
/// commit and which of the two static builds is on this node. The agent has
/// no build script (size, simplicity): the target is spelled from `cfg`.
pub fn version() -> String {
    let libc = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    format!(
        "kmm-day1-agent {} (git {}, {}-unknown-linux-{libc})",
        env!("CARGO_PKG_VERSION"),
        option_env!("KMM_DAY1_GIT_REV").unwrap_or("unknown"),
        std::env::consts::ARCH,
    )
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_iter(args);
    let sub = match parser.next()? {
        Some(Short('h') | Long("help")) => return Ok(Command::Help(MAIN_HELP)),
        Some(Short('V') | Long("version")) => return Ok(Command::Version),
        Some(Value(v)) => v.string()?,
        Some(other) => return Err(other.unexpected().into()),
        None => bail!("a command is required (pull, replace, status, verify, confirm or unquarantine); see --help"),
    };
    if !matches!(
        sub.as_str(),
        "pull" | "replace" | "status" | "verify" | "confirm" | "unquarantine"
    ) {
        bail!("unknown command `{sub}`: expected pull, replace, status, verify, confirm or unquarantine; see --help");
    }
    let guard_cmd = sub == "confirm" || sub == "unquarantine";
    let mut only_config = None;
    let mut verify = VerifyOpts::default();
    let mut sys_root = None;
    let mut common = Common::default();
    let mut oci_layout = None;
    let (mut no_reboot, mut dry_run, mut json, mut modules_root) = (false, false, false, None);
    let mut staged = false;
    let mut host_modules_root = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                // Leaked once per process: the help is printed and we exit.
                return Ok(Command::Help(Box::leak(help(&sub).into_boxed_str())));
            }
            Long("config-dir") if sub != "verify" => common.config_dir = parser.value()?.into(),
            Long("store") if sub != "verify" => common.store = parser.value()?.into(),
            Long("kernel-release") => {
                common.kernel_release = Some(parser.value()?.string()?);
            }
            Long("no-reboot") if sub == "pull" => no_reboot = true,
            Long("staged") if sub == "pull" => staged = true,
            Long("image") if sub == "verify" => verify.image = Some(parser.value()?.string()?),
            Long("module") if sub == "verify" => verify.modules.push(parser.value()?.string()?),
            Long("config") if sub == "verify" => verify.config = Some(parser.value()?.into()),
            Long("config") if guard_cmd => only_config = Some(parser.value()?.string()?),
            Long("module-root") if sub == "verify" => {
                verify.module_root = Some(parser.value()?.string()?);
            }
            Long("firmware-dir") if sub == "verify" => {
                verify.firmware_dir = Some(parser.value()?.string()?);
            }
            Long("insecure") if sub == "verify" => verify.insecure = true,
            Long("policy") if sub == "verify" => verify.policy = Some(parser.value()?.into()),
            Long("registries-d") if sub == "verify" => {
                verify.registries_d = Some(parser.value()?.into());
            }
            Long("signatures-only") if sub == "verify" => verify.signatures_only = true,
            Long("retry-for") if sub == "verify" => {
                let v = parser.value()?.string()?;
                verify.retry_for = Some(v.parse().map_err(|_| {
                    anyhow::anyhow!("--retry-for `{v}`: expected a number of seconds (e.g. 60)")
                })?);
            }
            Long("sys-root") if sub == "status" => sys_root = Some(parser.value()?.into()),
            Long("oci-layout") if sub == "pull" || sub == "verify" => {
                oci_layout = Some(PathBuf::from(parser.value()?));
            }
            Long("dry-run") if sub == "replace" => dry_run = true,
            Long("json") if sub == "replace" || sub == "status" => json = true,
            Long("modules-root") if sub == "replace" => {
                modules_root = Some(PathBuf::from(parser.value()?));
            }
            Long("host-modules-root") if sub == "replace" => {
                host_modules_root = Some(PathBuf::from(parser.value()?));
            }
            other => {
                return Err(anyhow::Error::from(other.unexpected()))
                    .with_context(|| format!("`{sub}`: see `kmm-day1-agent {sub} --help`"))
            }
        }
    }
    Ok(match sub.as_str() {
        "pull" => Command::Pull(PullOpts {
            common,
            no_reboot,
            oci_layout,
            staged,
        }),
        "replace" => {
            if json && !dry_run {
                bail!("`replace --json` prints a plan: use it with --dry-run");
            }
            Command::Replace(ReplaceOpts {
                common,
                dry_run,
                json,
                modules_root,
                host_modules_root,
            })
        }
        "verify" => {
            verify.kernel_release = common.kernel_release;
            verify.oci_layout = oci_layout;
            if verify.image.is_none() && verify.config.is_none() {
                bail!("`verify` needs --image REF (or --config FILE naming one); see `kmm-day1-agent verify --help`");
            }
            Command::Verify(verify)
        }
        "confirm" => Command::Confirm(GuardOpts {
            common,
            config: only_config,
        }),
        "unquarantine" => Command::Unquarantine(GuardOpts {
            common,
            config: only_config,
        }),
        _ => Command::Status(StatusOpts {
            common,
            json,
            sys_root,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command> {
        parse(
            std::iter::once("kmm-day1-agent")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn subcommands_and_options() {
        assert_eq!(
            p(&[
                "pull",
                "--no-reboot",
                "--store",
                "/s",
                "--kernel-release",
                "6.1.0-1-amd64"
            ])
            .unwrap(),
            Command::Pull(PullOpts {
                common: Common {
                    store: "/s".into(),
                    kernel_release: Some("6.1.0-1-amd64".into()),
                    ..Common::default()
                },
                no_reboot: true,
                oci_layout: None,
                staged: false,
            })
        );
        let Command::Replace(r) = p(&[
            "replace",
            "--dry-run",
            "--json",
            "--modules-root",
            "/lib/modules",
        ])
        .unwrap() else {
            panic!("expected replace");
        };
        assert!(r.dry_run && r.json);
        assert_eq!(
            r.modules_root.as_deref(),
            Some(std::path::Path::new("/lib/modules"))
        );
        assert_eq!(r.common.config_dir, PathBuf::from(CONFIG_DIR));
        assert!(matches!(
            p(&["status", "--json"]).unwrap(),
            Command::Status(StatusOpts { json: true, .. })
        ));
        assert_eq!(
            p(&["unquarantine", "--config", "sfc", "--store", "/s"]).unwrap(),
            Command::Unquarantine(GuardOpts {
                common: Common {
                    store: PathBuf::from("/s"),
                    ..Common::default()
                },
                config: Some("sfc".into()),
            })
        );
        assert_eq!(
            p(&["confirm"]).unwrap(),
            Command::Confirm(GuardOpts::default())
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(p(&["--help"]).unwrap(), Command::Help(MAIN_HELP));
        let Command::Help(h) = p(&["replace", "--help"]).unwrap() else {
            panic!()
        };
        assert!(h.contains("--dry-run") && h.contains("--config-dir"));
        assert_eq!(p(&["-V"]).unwrap(), Command::Version);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = format!("{:#}", p(&[]).unwrap_err());
        assert!(e.contains("a command is required"), "{e}");
        let e = format!("{:#}", p(&["fetch"]).unwrap_err());
        assert!(e.contains("unknown command `fetch`"), "{e}");
        let e = format!("{:#}", p(&["pull", "--dry-run"]).unwrap_err());
        assert!(e.contains("--dry-run") && e.contains("pull --help"), "{e}");
        let e = format!("{:#}", p(&["replace", "--json"]).unwrap_err());
        assert!(e.contains("with --dry-run"), "{e}");
        let e = format!("{:#}", p(&["pull", "--store"]).unwrap_err());
        assert!(e.contains("--store"), "{e}");
        let e = format!("{:#}", p(&["status", "--config", "sfc"]).unwrap_err());
        assert!(e.contains("--config") && e.contains("status --help"), "{e}");
    }
}
