//! The node configuration of kmm-day1: `/etc/kmm-day1/<name>.toml`.
//!
//! The generator writes it and the agent reads it, through the one type in this
//! crate. Parsing and validation happen once, here, so both programs reject the
//! same files with the same messages; the rest of either program only ever sees
//! a [`NodeConfig`] that has passed [`NodeConfig::validate`].

pub mod image;
pub mod kernel;
pub mod read;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use image::ImageRef;
pub use kernel::KernelVars;

/// Where the MachineConfig puts the node configs (one file per MachineConfig).
pub const CONFIG_DIR: &str = "/etc/kmm-day1";
/// The agent's own state: downloaded trees, results, counters.
pub const STORE_DIR: &str = "/var/lib/kmm-day1";
/// Where Ignition installs the agent (`/var/usrlocal/bin` on RHCOS).
pub const AGENT_PATH: &str = "/usr/local/bin/kmm-day1-agent";
/// The node's pull secret on OpenShift.
pub const KUBELET_AUTH_FILE: &str = "/var/lib/kubelet/config.json";

/// Why a config (or a value derived from it) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The OS error is in the message and deliberately not a `#[source]`:
    // callers print the whole chain (`{:#}`), which printed it twice.
    #[error("{path}: cannot read: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("image reference `{0}` is invalid: {1}")]
    InvalidImage(String, String),
    #[error("template `{0}`: {1}")]
    Template(String, String),
    #[error("kernel release `{0}` is invalid: it needs at least major.minor.patch (as `uname -r` prints)")]
    InvalidKernelRelease(String),
}

/// What the agent does once a new tree is in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterPull {
    /// Reboot so the replace unit swaps the module early in the next boot,
    /// before anything uses the in-tree driver (the safe default) — only
    /// while the node has not joined the cluster, unless
    /// `pull.reboot_joined_node` says so (docs/upgrades.md#the-reboot-guard).
    #[default]
    Reboot,
    /// Swap the module immediately, without a reboot.
    Live,
    /// Do nothing; the swap happens at the next boot, whenever that is.
    None,
}

/// Where a boot that loaded the out-of-tree modules is confirmed healthy
/// (the crash-loop guard, docs/replace.md#crash-loop-guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfirmAt {
    /// When `kmm-day1-pull.service` starts, after `network-online.target`.
    #[default]
    Pull,
    /// Only by `kmm-day1-agent confirm`, run by the admin's own unit.
    Command,
}

impl ConfirmAt {
    fn from_toml(v: &read::Value<'_>) -> Result<Self, read::ReadError> {
        read::variant(
            v,
            &[("pull", ConfirmAt::Pull), ("command", ConfirmAt::Command)],
        )
    }
}

/// `[replace]`: the boot-time swap's guard against a module that takes the
/// kernel down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaceOptions {
    /// Consecutive boots that loaded the same tree and never reached the
    /// health point before that tree is quarantined (1–10).
    pub max_unconfirmed_boots: u32,
    /// The health point.
    pub confirm: ConfirmAt,
    /// Swap only on a node with a device the modules' own device aliases
    /// match (`.modinfo` `alias=pci:…`, `usb:…`, …). Unset: yes when a
    /// configured module has device aliases, no when none has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_device: Option<bool>,
}

impl Default for ReplaceOptions {
    fn default() -> Self {
        ReplaceOptions {
            max_unconfirmed_boots: 2,
            confirm: ConfirmAt::Pull,
            require_device: None,
        }
    }
}

impl ReplaceOptions {
    /// Rendered configs leave a default section out, so configs written
    /// before it existed and after stay byte-identical.
    pub fn is_default(&self) -> bool {
        *self == ReplaceOptions::default()
    }

    fn from_toml(v: &read::Value<'_>) -> Result<Self, read::ReadError> {
        let t = read::table(v, "struct ReplaceOptions")?;
        t.deny_unknown(&["max_unconfirmed_boots", "confirm", "require_device"])?;
        let d = ReplaceOptions::default();
        Ok(ReplaceOptions {
            max_unconfirmed_boots: match t.get("max_unconfirmed_boots") {
                None => d.max_unconfirmed_boots,
                Some(v) => {
                    let n = read::unsigned(v, u32::MAX.into(), "u32")?;
                    u32::try_from(n).unwrap_or(u32::MAX)
                }
            },
            confirm: t.opt("confirm", ConfirmAt::from_toml)?.unwrap_or(d.confirm),
            require_device: t.opt("require_device", read::boolean)?,
        })
    }
}

/// One `[[kernel_mappings]]` entry, with KMM's semantics: the first entry whose
/// `literal` equals, or whose `regexp` matches, the kernel release wins.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KernelMapping {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
    /// Unanchored, as KMM's (Go) `regexp.MatchString`; anchor with `^…$`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
    /// Overrides the top-level `image` for the kernels this entry matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Overrides the top-level `in_tree_remove`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_tree_remove: Option<Vec<String>>,
    /// Overrides `pull.insecure` for this entry's registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Overrides `pull.insecure_skip_tls_verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
}

/// `[pull]`: how the agent reaches the registry and what it does afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullOptions {
    /// docker-config JSON files with registry credentials, tried in order.
    pub auth_files: Vec<String>,
    /// Plain HTTP to the registry (KMM's `registryTLS.insecure`).
    pub insecure: bool,
    /// TLS without certificate verification (KMM's `insecureSkipTLSVerify`).
    pub insecure_skip_tls_verify: bool,
    /// Extra directory of PEM CA certificates, besides the system store and
    /// `/etc/docker/certs.d/<host>` / `/etc/containers/certs.d/<host>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_dir: Option<String>,
    pub after_pull: AfterPull,
    /// Reboots the agent may request for one kernel release before it gives
    /// up: a guard against an image that never yields a loadable tree.
    pub max_reboots_per_kernel: u32,
    /// `after_pull = "reboot"` reboots a node that has joined the cluster
    /// too: undrained, outside the MCO's `maxUnavailable`. Off by default.
    pub reboot_joined_node: bool,
    /// Seconds the pull for a staged deployment's kernel may take in the
    /// shutdown of the reboot into it (kmm-day1-pull-staged.service).
    pub shutdown_timeout_secs: u32,
}

impl PullOptions {
    /// On a node that has joined the cluster, a new tree waits for the
    /// MCO's next reboot instead of the reboot `after_pull` would ask for.
    pub fn waits_for_mco_when_joined(&self) -> bool {
        self.after_pull == AfterPull::Reboot && !self.reboot_joined_node
    }
}

/// `pull.shutdown_timeout_secs` bounds: the unit's `TimeoutStopSec=` is
/// 1260 s, and systemd's reboot.target gives the whole shutdown 30 min.
pub const SHUTDOWN_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 10..=1200;

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            auth_files: vec![KUBELET_AUTH_FILE.to_string()],
            insecure: false,
            insecure_skip_tls_verify: false,
            ca_dir: None,
            after_pull: AfterPull::Reboot,
            max_reboots_per_kernel: 2,
            reboot_joined_node: false,
            shutdown_timeout_secs: 300,
        }
    }
}

/// `[limits]`: caps on what an image may make the agent download and write.
/// A registry can be compromised; these keep a hostile image from filling the
/// disk or the inode table of `/var`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Bytes of all layers as downloaded (compressed).
    pub max_download_bytes: u64,
    /// Bytes written to the store after decompression and filtering.
    pub max_extract_bytes: u64,
    /// Tar entries read across all layers.
    pub max_entries: u64,
    /// Bytes of layer tar streams after decompression, across all layers.
    /// Entries outside the module tree and firmware dir are read and dropped
    /// but count too: a decompression bomb there must not run unbounded.
    pub max_tar_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_download_bytes: 4 << 30,
            max_extract_bytes: 4 << 30,
            max_entries: 200_000,
            max_tar_bytes: 16 << 30,
        }
    }
}

impl KernelMapping {
    fn from_toml(v: &read::Value<'_>) -> Result<Self, read::ReadError> {
        let t = read::table(v, "struct KernelMapping")?;
        t.deny_unknown(&[
            "literal",
            "regexp",
            "image",
            "in_tree_remove",
            "insecure",
            "insecure_skip_tls_verify",
        ])?;
        Ok(KernelMapping {
            literal: t.opt("literal", read::string)?,
            regexp: t.opt("regexp", read::string)?,
            image: t.opt("image", read::string)?,
            in_tree_remove: t.opt("in_tree_remove", read::strings)?,
            insecure: t.opt("insecure", read::boolean)?,
            insecure_skip_tls_verify: t.opt("insecure_skip_tls_verify", read::boolean)?,
        })
    }
}

impl PullOptions {
    fn from_toml(v: &read::Value<'_>) -> Result<Self, read::ReadError> {
        let t = read::table(v, "struct PullOptions")?;
        t.deny_unknown(&[
            "auth_files",
            "insecure",
            "insecure_skip_tls_verify",
            "ca_dir",
            "after_pull",
            "max_reboots_per_kernel",
            "reboot_joined_node",
            "shutdown_timeout_secs",
        ])?;
        let d = PullOptions::default();
        let u32_or = |key: &str, default: u32| match t.get(key) {
            None => Ok(default),
            Some(v) => read::unsigned(v, u32::MAX.into(), "u32")
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        };
        Ok(PullOptions {
            auth_files: t.opt("auth_files", read::strings)?.unwrap_or(d.auth_files),
            insecure: t.opt("insecure", read::boolean)?.unwrap_or(d.insecure),
            insecure_skip_tls_verify: t
                .opt("insecure_skip_tls_verify", read::boolean)?
                .unwrap_or(d.insecure_skip_tls_verify),
            ca_dir: t.opt("ca_dir", read::string)?,
            after_pull: t
                .opt("after_pull", AfterPull::from_toml)?
                .unwrap_or(d.after_pull),
            max_reboots_per_kernel: u32_or("max_reboots_per_kernel", d.max_reboots_per_kernel)?,
            reboot_joined_node: t
                .opt("reboot_joined_node", read::boolean)?
                .unwrap_or(d.reboot_joined_node),
            shutdown_timeout_secs: u32_or("shutdown_timeout_secs", d.shutdown_timeout_secs)?,
        })
    }
}

impl Limits {
    fn from_toml(v: &read::Value<'_>) -> Result<Self, read::ReadError> {
        let t = read::table(v, "struct Limits")?;
        const KEYS: [&str; 4] = [
            "max_download_bytes",
            "max_extract_bytes",
            "max_entries",
            "max_tar_bytes",
        ];
        t.deny_unknown(&KEYS)?;
        let d = Limits::default();
        let mut values = [
            d.max_download_bytes,
            d.max_extract_bytes,
            d.max_entries,
            d.max_tar_bytes,
        ];
        for (key, value) in KEYS.iter().zip(&mut values) {
            if let Some(v) = t.get(key) {
                *value = read::unsigned(v, u64::MAX, "u64")?;
            }
        }
        let [max_download_bytes, max_extract_bytes, max_entries, max_tar_bytes] = values;
        Ok(Limits {
            max_download_bytes,
            max_extract_bytes,
            max_entries,
            max_tar_bytes,
        })
    }
}

impl AfterPull {
    fn from_toml(v: &read::Value<'_>) -> Result<Self, read::ReadError> {
        read::variant(
            v,
            &[
                ("reboot", AfterPull::Reboot),
                ("live", AfterPull::Live),
                ("none", AfterPull::None),
            ],
        )
    }
}

/// `/etc/kmm-day1/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// The driver image; may use KMM's kernel variables or be pinned by digest.
    /// Optional only when every kernel mapping names its own image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Kernel modules to load, in this order, each with its dependencies.
    pub modules: Vec<String>,
    /// In-tree modules to remove first; default: the names in `modules`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_tree_remove: Option<Vec<String>>,
    /// Module parameters, `name = ["key=value", …]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Vec<String>>,
    /// Directory in the image that holds `lib/modules/<kernel>` (KMM's `dirName`).
    pub module_root: String,
    /// Firmware directory in the image, exposed through `firmware_class.path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_dir: Option<String>,
    /// Value of `${MOD_NAME}`; default: the config's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_name: Option<String>,
    /// Value of `${MOD_NAMESPACE}`; default: empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_namespace: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_mappings: Vec<KernelMapping>,
    pub pull: PullOptions,
    #[serde(skip_serializing_if = "ReplaceOptions::is_default")]
    pub replace: ReplaceOptions,
    pub limits: Limits,
}

fn default_module_root() -> String {
    "/opt".to_string()
}

/// What a config says for one kernel release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The image reference after variable substitution, as written.
    pub reference: String,
    pub image: ImageRef,
    pub in_tree_remove: Vec<String>,
    pub insecure: bool,
    pub insecure_skip_tls_verify: bool,
}

/// Module names compare with `-` and `_` as equal, as the kernel does.
pub fn module_name_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (x == b'-' || x == b'_') && (y == b'-' || y == b'_'))
}

/// The canonical form of a module name (`-` → `_`), as in `/proc/modules`.
pub fn module_name_canonical(name: &str) -> String {
    name.replace('-', "_")
}

fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 56 // MODULE_NAME_LEN - 1 in the kernel
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A config's name becomes a directory in the store and part of messages.
pub fn valid_config_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A kernel release that every template is checked against when a config is
/// validated, so a bad variable is caught when the config is written.
const PROBE_RELEASE: &str = "5.14.0-427.13.1.el9_4.x86_64";

impl NodeConfig {
    /// A config with the given image and modules and every default.
    pub fn new(image: impl Into<String>, modules: Vec<String>) -> Self {
        NodeConfig {
            image: Some(image.into()),
            modules,
            in_tree_remove: None,
            parameters: BTreeMap::new(),
            module_root: default_module_root(),
            firmware_dir: None,
            mod_name: None,
            mod_namespace: None,
            kernel_mappings: Vec::new(),
            pull: PullOptions::default(),
            replace: ReplaceOptions::default(),
            limits: Limits::default(),
        }
    }

    /// Read and validate `path`; the config's name is the file's stem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::parse(path, &text)
    }

    /// Parse and validate `text`; `path` names the file in every error and
    /// gives the config's name.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let cfg = Self::from_toml(text).map_err(|e| {
            let (line, column) = e.line_col(text);
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message,
            }
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The config in `text`, field by field (read.rs says why not serde).
    fn from_toml(text: &str) -> Result<Self, read::ReadError> {
        let doc = read::parse(text)?;
        let t = doc.root();
        t.deny_unknown(&[
            "image",
            "modules",
            "in_tree_remove",
            "parameters",
            "module_root",
            "firmware_dir",
            "mod_name",
            "mod_namespace",
            "kernel_mappings",
            "pull",
            "replace",
            "limits",
        ])?;
        let mut parameters = BTreeMap::new();
        if let Some(p) = t.opt("parameters", |v| read::table(v, "a map"))? {
            for (module, list) in p.entries() {
                parameters.insert(module.to_string(), read::strings(list)?);
            }
        }
        let kernel_mappings = match t.get("kernel_mappings") {
            None => Vec::new(),
            Some(v) => read::array(v)?
                .iter()
                .map(KernelMapping::from_toml)
                .collect::<Result<_, _>>()?,
        };
        Ok(NodeConfig {
            image: t.opt("image", read::string)?,
            modules: read::strings(t.required("modules")?)?,
            in_tree_remove: t.opt("in_tree_remove", read::strings)?,
            parameters,
            module_root: t
                .opt("module_root", read::string)?
                .unwrap_or_else(default_module_root),
            firmware_dir: t.opt("firmware_dir", read::string)?,
            mod_name: t.opt("mod_name", read::string)?,
            mod_namespace: t.opt("mod_namespace", read::string)?,
            kernel_mappings,
            pull: t.opt("pull", PullOptions::from_toml)?.unwrap_or_default(),
            replace: t
                .opt("replace", ReplaceOptions::from_toml)?
                .unwrap_or_default(),
            limits: t.opt("limits", Limits::from_toml)?.unwrap_or_default(),
        })
    }

    /// The config's name, from its file name (`sfc.toml` → `sfc`).
    pub fn name_of(path: &Path) -> Option<&str> {
        path.file_name()?.to_str()?.strip_suffix(".toml")
    }

    /// Check everything that can be checked without a node: names, image
    /// references for a sample kernel, regexps, parameters, paths.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let name = Self::name_of(path).unwrap_or_default();
        if !valid_config_name(name) {
            return Err(invalid(
                "<file name>",
                format!("the config name `{name}` must be 1-128 characters of [A-Za-z0-9._-], end in `.toml` and not start with `.`"),
            ));
        }
        if self.modules.is_empty() {
            return Err(invalid(
                "modules",
                "name at least one kernel module to load".into(),
            ));
        }
        let check_modules = |key: &str, list: &[String]| -> Result<(), ConfigError> {
            for (i, m) in list.iter().enumerate() {
                if !valid_module_name(m) {
                    return Err(invalid(
                        &format!("{key}[{i}]"),
                        format!("`{m}` is not a kernel module name (1-55 characters of [A-Za-z0-9_-], no path or `.ko`)"),
                    ));
                }
                if list[..i].iter().any(|p| module_name_eq(p, m)) {
                    return Err(invalid(
                        &format!("{key}[{i}]"),
                        format!("`{m}` is listed twice"),
                    ));
                }
            }
            Ok(())
        };
        check_modules("modules", &self.modules)?;
        if let Some(r) = &self.in_tree_remove {
            check_modules("in_tree_remove", r)?;
        }
        for (module, params) in &self.parameters {
            if !self.modules.iter().any(|m| module_name_eq(m, module)) {
                return Err(invalid(
                    &format!("parameters.{module}"),
                    format!("`{module}` is not in `modules`; parameters apply to the configured modules"),
                ));
            }
            for (i, p) in params.iter().enumerate() {
                let key = p.split('=').next().unwrap_or_default();
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                    || p.bytes()
                        .any(|b| b.is_ascii_whitespace() || b == 0 || b == b'"')
                {
                    return Err(invalid(
                        &format!("parameters.{module}[{i}]"),
                        format!("`{p}` must be `name=value` or `name`, with no spaces or quotes"),
                    ));
                }
            }
        }
        for (key, dir) in [
            ("module_root", Some(&self.module_root)),
            ("firmware_dir", self.firmware_dir.as_ref()),
        ] {
            if let Some(dir) = dir {
                if !dir.starts_with('/') || dir.split('/').any(|c| c == ".." || c == ".") {
                    return Err(invalid(
                        key,
                        format!(
                            "`{dir}` must be an absolute path in the image without `.` or `..`"
                        ),
                    ));
                }
            }
        }
        if !(1..=10).contains(&self.replace.max_unconfirmed_boots) {
            return Err(invalid(
                "replace.max_unconfirmed_boots",
                format!(
                    "{} is outside 1–10: 0 would never load the modules, more than 10 \
                     leaves a pool crash-looping for hours",
                    self.replace.max_unconfirmed_boots
                ),
            ));
        }
        if self.pull.max_reboots_per_kernel > 10 {
            return Err(invalid(
                "pull.max_reboots_per_kernel",
                format!(
                    "{} is more than 10; the guard exists to stop reboot loops",
                    self.pull.max_reboots_per_kernel
                ),
            ));
        }
        if !SHUTDOWN_TIMEOUT_RANGE.contains(&self.pull.shutdown_timeout_secs) {
            return Err(invalid(
                "pull.shutdown_timeout_secs",
                format!(
                    "{} is outside 10–1200: the reboot into a staged deployment waits for it, \
                     and systemd forces the reboot after 30 min",
                    self.pull.shutdown_timeout_secs
                ),
            ));
        }
        for (i, f) in self.pull.auth_files.iter().enumerate() {
            if !f.starts_with('/') {
                return Err(invalid(
                    &format!("pull.auth_files[{i}]"),
                    format!("`{f}` must be an absolute path"),
                ));
            }
        }
        if let Some(d) = &self.pull.ca_dir {
            if !d.starts_with('/') {
                return Err(invalid(
                    "pull.ca_dir",
                    format!("`{d}` must be an absolute path"),
                ));
            }
        }
        if self.limits.max_entries == 0
            || self.limits.max_extract_bytes == 0
            || self.limits.max_download_bytes == 0
            || self.limits.max_tar_bytes == 0
        {
            return Err(invalid(
                "limits",
                "every limit must be greater than 0".into(),
            ));
        }
        let probe = KernelVars::new(PROBE_RELEASE)?;
        let check_image = |key: &str, template: &str| -> Result<(), ConfigError> {
            let s = kernel::substitute(template, &probe, name, "")
                .map_err(|e| invalid(key, e.to_string()))?;
            ImageRef::parse(&s).map_err(|e| invalid(key, e.to_string()))?;
            Ok(())
        };
        if let Some(image) = &self.image {
            check_image("image", image)?;
        }
        for (i, m) in self.kernel_mappings.iter().enumerate() {
            let key = |k: &str| format!("kernel_mappings[{i}].{k}");
            match (&m.literal, &m.regexp) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(invalid(
                        &format!("kernel_mappings[{i}]"),
                        "set exactly one of `literal` and `regexp`".into(),
                    ))
                }
                (None, Some(re)) => {
                    regex_lite::Regex::new(re).map_err(|e| {
                        invalid(
                            &key("regexp"),
                            format!("`{re}` is not a valid regular expression: {e}"),
                        )
                    })?;
                }
                (Some(lit), None) => {
                    if lit.is_empty() {
                        return Err(invalid(&key("literal"), "must not be empty".into()));
                    }
                }
            }
            match (&m.image, &self.image) {
                (Some(img), _) => check_image(&key("image"), img)?,
                (None, Some(_)) => {}
                (None, None) => return Err(invalid(
                    &key("image"),
                    "this mapping has no image and there is no top-level `image` to fall back to"
                        .into(),
                )),
            }
            if let Some(r) = &m.in_tree_remove {
                check_modules(&key("in_tree_remove"), r)?;
            }
        }
        if self.image.is_none() && self.kernel_mappings.is_empty() {
            return Err(invalid(
                "image",
                "set `image`, or `kernel_mappings` entries that each name an image".into(),
            ));
        }
        Ok(())
    }

    /// The image and options for `release`, or `None` when kernel mappings
    /// exist and none matches (KMM then loads nothing on that node, and so
    /// do we).
    pub fn resolve(&self, name: &str, release: &str) -> Result<Option<Resolved>, ConfigError> {
        let vars = KernelVars::new(release)?;
        let mapping = if self.kernel_mappings.is_empty() {
            None
        } else {
            match self.mapping_for(release) {
                Some((_, m)) => Some(m),
                None => return Ok(None),
            }
        };
        let template = mapping
            .and_then(|m| m.image.as_deref())
            .or(self.image.as_deref())
            .ok_or_else(|| ConfigError::Template(String::new(), "no image configured".into()))?;
        let mod_name = self.mod_name.as_deref().unwrap_or(name);
        let reference = kernel::substitute(
            template,
            &vars,
            mod_name,
            self.mod_namespace.as_deref().unwrap_or_default(),
        )?;
        let image = ImageRef::parse(&reference)?;
        let in_tree_remove = mapping
            .and_then(|m| m.in_tree_remove.clone())
            .or_else(|| self.in_tree_remove.clone())
            .unwrap_or_else(|| self.modules.clone());
        Ok(Some(Resolved {
            reference,
            image,
            in_tree_remove,
            insecure: mapping
                .and_then(|m| m.insecure)
                .unwrap_or(self.pull.insecure),
            insecure_skip_tls_verify: mapping
                .and_then(|m| m.insecure_skip_tls_verify)
                .unwrap_or(self.pull.insecure_skip_tls_verify),
        }))
    }

    /// The first kernel mapping that applies to `release`, with its index
    /// (KMM's rule: first match wins; a literal must equal the release, a
    /// regexp match anywhere in it).
    pub fn mapping_for(&self, release: &str) -> Option<(usize, &KernelMapping)> {
        self.kernel_mappings
            .iter()
            .enumerate()
            .find(|(_, m)| match (&m.literal, &m.regexp) {
                (Some(l), _) => l == release,
                // Validated at load; a regexp that no longer compiles matches nothing.
                (None, Some(re)) => regex_lite::Regex::new(re).is_ok_and(|r| r.is_match(release)),
                (None, None) => false,
            })
    }

    /// Parameters for `module` as one string for `finit_module`.
    pub fn parameters_for(&self, module: &str) -> String {
        self.parameters
            .iter()
            .filter(|(m, _)| module_name_eq(m, module))
            .flat_map(|(_, p)| p.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The TOML text of this config, with a header saying where it came from.
    #[cfg(feature = "write")]
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_else(|e| {
            // Every field is a plain string, number, list or table: TOML can
            // always represent them. Reaching this is a bug in this crate.
            unreachable!("node config is always representable in TOML: {e}")
        });
        format!("# kmm-day1 node config; generated by kmm-day1, do not edit on the node.\n{body}")
    }
}

/// Every `*.toml` in `dir`, sorted by name, parsed and validated. A missing
/// directory is an empty list: a node without configs has nothing to do.
pub fn load_dir(dir: &Path) -> Result<Vec<(String, NodeConfig)>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => {
            return Err(ConfigError::Read {
                path: dir.to_path_buf(),
                cause,
            })
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|cause| ConfigError::Read {
            path: dir.to_path_buf(),
            cause,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let cfg = NodeConfig::load(&p)?;
            let name = NodeConfig::name_of(&p).unwrap_or_default().to_string();
            Ok((name, cfg))
        })
        .collect()
}

impl fmt::Display for AfterPull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AfterPull::Reboot => "reboot",
            AfterPull::Live => "live",
            AfterPull::None => "none",
        })
    }
}

#[cfg(test)]
mod tests;
