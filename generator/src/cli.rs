use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kmm_day1_config::AfterPull;

#[derive(Debug, Parser)]
#[command(
    name = "kmm-day1",
    version = crate::agent::LONG_VERSION.as_str(),
    about = "Generate the MachineConfig that replaces an in-tree kernel module with an out-of-tree one on a node's first boot"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the MachineConfig (or Butane, Ignition, node config, disruption
    /// policy) for one node config.
    Generate(Box<GenerateArgs>),
}

impl Cli {
    pub fn run(self) -> Result<()> {
        match self.command {
            Command::Generate(args) => crate::generate::run(&args),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A MachineConfig (YAML) for `oc create -f`.
    Machineconfig,
    /// A Butane config (`variant: openshift`).
    Butane,
    /// The plain Ignition config (JSON).
    Ignition,
    /// Only the node config TOML (`/etc/kmm-day1/<name>.toml`).
    Config,
    /// A `MachineConfiguration` patch so later changes need no reboot (OpenShift 4.17+).
    DisruptionPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "aarch64")]
    Aarch64,
}

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
    /// A KMM `Module` CR (YAML): its moduleLoader.container becomes the node config.
    #[arg(long, value_name = "FILE", conflicts_with_all = CONTENT_FLAGS, conflicts_with = "config", help_heading = "Input")]
    pub from_module: Option<PathBuf>,

    /// Config name: `/etc/kmm-day1/<NAME>.toml` and `${MOD_NAME}` [default: the
    /// file stem, the CR's name, or the first --module].
    #[arg(long, help_heading = "Input")]
    pub name: Option<String>,
    /// Driver image; may use KMM's variables, e.g. `quay.io/acme/drv:${KERNEL_FULL_VERSION}`.
    #[arg(long, help_heading = "Node config")]
    pub image: Option<String>,
    /// Kernel module to load (repeat; loaded in this order, each with its dependencies).
    #[arg(long = "module", value_name = "MODULE", help_heading = "Node config")]
    pub module: Vec<String>,
    /// In-tree module to remove first (repeat) [default: the --module names].
    #[arg(long, value_name = "MODULE", help_heading = "Node config")]
    pub in_tree_remove: Vec<String>,
    /// Module parameter, `MODULE=KEY=VALUE` or `MODULE=KEY` (repeat).
    #[arg(long, value_name = "MODULE=KEY=VALUE", help_heading = "Node config")]
    pub param: Vec<String>,
    /// Firmware directory in the image.
    #[arg(long, value_name = "DIR", help_heading = "Node config")]
    pub firmware_dir: Option<String>,
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
    /// MachineConfigPool role label, e.g. `worker` (required for machineconfig and butane).
    #[arg(long, help_heading = "Output")]
    pub pool: Option<String>,
    /// MachineConfig name [default: 99-<pool>-kmm-day1-<name>].
    #[arg(long, help_heading = "Output")]
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
    /// Do not gzip file contents (clusters older than OpenShift 4.10).
    #[arg(long, help_heading = "Output")]
    pub no_compress: bool,
    /// Write here (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,
}
