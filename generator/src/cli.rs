//! The command line of `kmm-day1`: one clap definition (the man pages and
//! completions are generated from it, `manual.rs`). No logic lives here
//! beyond checks between flags that clap cannot state, and no dispatch
//! (`main.rs` has it): the subcommands' modules take their argument types
//! from here, and this module uses none of them. The option types it shares
//! with the rest of the crate (`Format`, `Arch`) are defined where they are
//! used (`output`, `agent`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kmm_day1_config::AfterPull;

use crate::agent::Arch;
use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "kmm-day1",
    version = crate::agent::LONG_VERSION.as_str(),
    about = "Generate the MachineConfig that replaces an in-tree kernel module with an out-of-tree one on a node's first boot",
    after_help = MAIN_EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the MachineConfig (or Butane, Ignition, node config, disruption
    /// policy) for one node config, or one per document of --from-module.
    #[command(after_help = GENERATE_EXAMPLES)]
    Generate(Box<GenerateArgs>),
    /// Write the MachineConfig(s): `generate` with --format machineconfig
    /// (the verb of `oc kmm-day1 machineconfig …`).
    #[command(name = "machineconfig", visible_alias = "mc")]
    MachineConfig(Box<GenerateArgs>),
    /// Check a driver image before a rollout (module trees, modules.dep,
    /// vermagic, firmware, signatures): runs the embedded agent's `verify`;
    /// `kmm-day1 verify --help` lists its options.
    #[command(disable_help_flag = true)]
    Verify {
        /// Run this agent binary instead of the embedded one.
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
        /// The agent's `verify` options (--image REF, --oci-layout DIR, …).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "OPTIONS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Print a shell completion script (`make install` installs them).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (kmm-day1.1, kmm-day1-generate.1, …) into DIR.
    #[command(hide = true)]
    Manpages {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Shown after `kmm-day1 --help`; docs/getting-started.md has the long form.
const MAIN_EXAMPLES: &str = "\
Examples:
  kmm-day1 generate --config examples/sfc.toml --pool worker -o 99-worker-kmm-day1-sfc.yaml
  kmm-day1 generate --from-module examples/module-cr.yaml | oc create -f -
  kmm-day1 generate --help     every input, output and pull option

Docs: docs/getting-started.md; the node side: kmm-day1-agent(8).";

/// Shown after `kmm-day1 generate --help`. Every line is run by the docs test
/// (generator/tests/docs_commands.rs), so it cannot go stale.
const GENERATE_EXAMPLES: &str = "\
Examples:
  # From a node config file:
  kmm-day1 generate --config examples/sfc.toml --pool worker -o 99-worker-kmm-day1-sfc.yaml
  # From flags (the tag is the node's kernel release):
  kmm-day1 generate --pool worker --module sfc --image 'quay.io/acme/sfc-driver:${KERNEL_FULL_VERSION}'
  # From KMM objects (Module, BootModuleConfig, or a --- stream of them):
  kmm-day1 generate --from-module examples/bootmoduleconfig.yaml
  # Butane for openshift-install's manifests, or just the node config:
  kmm-day1 generate --config examples/sfc.toml --pool worker --format butane
  kmm-day1 generate --config examples/multi-module.toml --format config";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AfterPullArg {
    Reboot,
    Live,
    None,
}

impl From<AfterPullArg> for AfterPull {
    fn from(a: AfterPullArg) -> Self {
        match a {
            AfterPullArg::Reboot => AfterPull::Reboot,
            AfterPullArg::Live => AfterPull::Live,
            AfterPullArg::None => AfterPull::None,
        }
    }
}

/// Flags that describe what to load; a ready config or a Module CR already does.
const CONTENT_FLAGS: [&str; 9] = [
    "image",
    "module",
    "in_tree_remove",
    "param",
    "firmware_dir",
    "module_root",
    "kernel_mapping",
    "kernel_mapping_literal",
    "mod_namespace",
];

#[derive(Debug, Args)]
pub struct GenerateArgs {
    // ---- input: one of flags, --config, --from-module ----
    /// A ready node config (TOML); its name is the file stem unless --name.
    #[arg(long, value_name = "FILE.toml", conflicts_with_all = CONTENT_FLAGS, help_heading = "Input")]
    pub config: Option<PathBuf>,
    /// KMM `Module` and/or `BootModuleConfig` CRs (YAML, `---` separated): one
    /// node config and MachineConfig per document.
    #[arg(long, value_name = "FILE", conflicts_with_all = CONTENT_FLAGS, conflicts_with = "config", help_heading = "Input")]
    pub from_module: Option<PathBuf>,

    /// Config name: `/etc/kmm-day1/<NAME>.toml` and `${MOD_NAME}` [default: the
    /// file stem, the CR's name, or the first --module].
    #[arg(long, help_heading = "Input")]
    pub name: Option<String>,
    /// Driver image; may use KMM's variables, e.g. `quay.io/acme/drv:${KERNEL_FULL_VERSION}`;
    /// without a tag or digest the tag is the node's kernel release (as KMM's day1-utility).
    #[arg(long, help_heading = "Node config")]
    pub image: Option<String>,
    /// Kernel module to load (repeat; loaded in this order, each with its dependencies).
    #[arg(
        long = "module",
        visible_alias = "kernel-module",
        value_name = "MODULE",
        help_heading = "Node config"
    )]
    pub module: Vec<String>,
    /// In-tree modules to remove first (repeat, or comma-separated; "" for none)
    /// [default: the --module names].
    #[arg(
        long,
        visible_alias = "in-tree-modules-to-remove",
        value_name = "MODULE[,MODULE…]",
        value_delimiter = ',',
        help_heading = "Node config"
    )]
    pub in_tree_remove: Option<Vec<String>>,
    /// Module parameter, `MODULE=KEY=VALUE` or `MODULE=KEY` (repeat).
    #[arg(long, value_name = "MODULE=KEY=VALUE", help_heading = "Node config")]
    pub param: Vec<String>,
    /// Firmware directory in the image.
    #[arg(
        long,
        visible_alias = "firmware-files-path",
        value_name = "DIR",
        help_heading = "Node config"
    )]
    pub firmware_dir: Option<String>,
    /// Accepted for KMM's day1-utility scripts and ignored (with a warning):
    /// there is no KMM worker at boot.
    #[arg(long, value_name = "IMAGE", hide = true)]
    pub worker_image: Option<String>,
    /// Directory in the image holding `lib/modules/<kernel>` (KMM's dirName) [default: /opt].
    #[arg(long, value_name = "DIR", help_heading = "Node config")]
    pub module_root: Option<String>,
    /// Kernel mapping `REGEXP=IMAGE` (repeat; first match wins, after the literal ones).
    #[arg(long, value_name = "REGEXP=IMAGE", help_heading = "Node config")]
    pub kernel_mapping: Vec<String>,
    /// Kernel mapping `KERNEL_RELEASE=IMAGE` matched exactly (repeat; tried before the regexps).
    #[arg(long, value_name = "KVER=IMAGE", help_heading = "Node config")]
    pub kernel_mapping_literal: Vec<String>,
    /// Value of `${MOD_NAMESPACE}` in image templates.
    #[arg(long, value_name = "NAMESPACE", help_heading = "Node config")]
    pub mod_namespace: Option<String>,

    // ---- pull options: allowed with flags and --from-module ----
    /// What the agent does after a pull [default: reboot].
    #[arg(long, value_enum, conflicts_with = "config", help_heading = "Pull")]
    pub after_pull: Option<AfterPullArg>,
    /// Plain HTTP to the registry.
    #[arg(long, conflicts_with = "config", help_heading = "Pull")]
    pub insecure: bool,
    /// TLS without certificate verification.
    #[arg(long, conflicts_with = "config", help_heading = "Pull")]
    pub insecure_skip_tls_verify: bool,
    /// Registry credentials file (repeat) [default: /var/lib/kubelet/config.json].
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "config",
        help_heading = "Pull"
    )]
    pub auth_file: Vec<String>,
    /// Extra directory of PEM CA certificates on the node.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "config",
        help_heading = "Pull"
    )]
    pub ca_dir: Option<String>,
    /// Reboots the agent may request per kernel release [default: 2].
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "config",
        help_heading = "Pull"
    )]
    pub max_reboots: Option<u32>,

    // ---- output ----
    /// Output format.
    #[arg(
        long,
        value_enum,
        default_value = "machineconfig",
        help_heading = "Output"
    )]
    pub format: Format,
    /// MachineConfigPool role label, e.g. `worker` (required for machineconfig and butane,
    /// unless the input names it).
    #[arg(long, visible_alias = "machine-config-pool", help_heading = "Output")]
    pub pool: Option<String>,
    /// MachineConfig name [default: the BootModuleConfig's, else 99-<pool>-kmm-day1-<name>].
    #[arg(long, visible_alias = "machine-config", help_heading = "Output")]
    pub mc_name: Option<String>,
    /// Ignition spec version: 3.2.0 (OpenShift 4.12+) or 3.4.0 (4.14+).
    #[arg(
        long,
        default_value = "3.2.0",
        value_name = "VERSION",
        help_heading = "Output"
    )]
    pub ignition_version: String,
    /// Node architecture: picks the embedded agent.
    #[arg(long, value_enum, default_value = "x86_64", help_heading = "Output")]
    pub arch: Arch,
    /// Agent binary to embed instead of the built-in one.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub agent: Option<PathBuf>,
    /// Removed: accepted only to say so (a MachineConfig without gzip never
    /// fits, and every supported release takes gzip). See docs/generator.md.
    #[arg(long, hide = true)]
    pub no_compress: bool,
    /// Write here (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    // ---- size check ----
    /// The pool's current rendered MachineConfig (`oc get mc rendered-<pool>-<hash> -o json`,
    /// `-` for stdin): say whether the pool still fits under 1.5 MiB with this MachineConfig
    /// merged in, and refuse (writing nothing) when it does not.
    #[arg(long, value_name = "FILE.json", help_heading = "Size check")]
    pub rendered: Option<PathBuf>,

    // ---- explain ----
    /// Print which kernel mapping and image a node running kernel RELEASE
    /// (`uname -r`) would get, for each config, and write nothing else.
    #[arg(
        long,
        value_name = "RELEASE",
        conflicts_with_all = ["output", "rendered"],
        help_heading = "Check"
    )]
    pub explain_kernel: Option<String>,

    /// Before writing anything, run the agent's `verify` for each config
    /// against the image in this OCI layout (tagged as the config's image
    /// is): module tree, vermagic, firmware, and each configured parameter
    /// against the module's own. Any FAIL refuses.
    #[arg(long, value_name = "DIR", help_heading = "Check")]
    pub check_image: Option<PathBuf>,
    /// The kernel release `--check-image` checks (needed when the image
    /// reference uses kernel variables) [default: every tree in the image].
    #[arg(
        long,
        value_name = "RELEASE",
        requires = "check_image",
        help_heading = "Check"
    )]
    pub check_kernel: Option<String>,

    /// Warn (before writing) when a node with this containers-policy.json
    /// would refuse a config's image: the embedded agent resolves the image
    /// at its registry and checks its signatures as a node's pull would
    /// (`verify --signatures-only`). Needs the registry; with kernel
    /// variables in the image, also --policy-kernel.
    #[arg(long, value_name = "FILE", help_heading = "Check")]
    pub policy: Option<PathBuf>,
    /// registries.d for --policy's `use-sigstore-attachments`
    /// [default: /etc/containers/registries.d].
    #[arg(long, value_name = "DIR", requires = "policy", help_heading = "Check")]
    pub policy_registries_d: Option<PathBuf>,
    /// The kernel release whose image --policy checks.
    #[arg(
        long,
        value_name = "RELEASE",
        requires = "policy",
        help_heading = "Check"
    )]
    pub policy_kernel: Option<String>,
}
