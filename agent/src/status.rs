//! `status` (see `cli::STATUS_HELP`, docs/status.md): what `pull` and
//! `replace` left in the store, what the kernel runs, and what happens next.
//!
//! Read-only and lock-free: it may run beside a pull, and as any user (the
//! state files are world-readable and hold no secrets). The `--json` shape
//! and the exit codes are an interface: docs/status.md pins them and
//! `agent/tests/status_*.rs` test them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use kmm_day1_config::{module_name_canonical, AfterPull, NodeConfig};
use serde::Serialize;

use crate::cli;
use crate::context::RunContext;
use crate::guard;
use crate::kernel::{Kernel as _, Real};
use crate::modules::Tree;
use crate::store::state::{self, PullResult, PullState, ReplaceResult, ReplaceState, TreeMeta};
use crate::store::Store;
use crate::units::Tenths;
use crate::{log, modinfo};

/// Bumped when a field changes meaning or goes away (adding one does not).
pub const JSON_VERSION: u32 = 1;

/// Where a config stands for one kernel release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No kernel mapping matches: nothing to do for this kernel.
    NoMapping,
    /// No verified tree in the store yet.
    Pending,
    /// A verified tree is stored; its modules are not running.
    Pulled,
    /// The kernel runs the stored tree's modules.
    Loaded,
    /// The last pull (with no tree to fall back on) or replace failed.
    Failed,
    /// Replace failed and put the in-tree modules back.
    RolledBack,
    /// The crash-loop guard quarantined the stored tree on this kernel.
    Quarantined,
    /// No device of this node matches the modules' device aliases: the
    /// in-tree driver stays, by design (`require_device`).
    NoDevice,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::NoMapping => "no-mapping",
            State::Pending => "pending",
            State::Pulled => "pulled",
            State::Loaded => "loaded",
            State::Failed => "failed",
            State::RolledBack => "rolled-back",
            State::Quarantined => "quarantined",
            State::NoDevice => "no-device",
        }
    }
}

/// Exit code 0, 1, 2 or 3 (docs/status.md has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Ok = 0,
    Degraded = 1,
    Failed = 2,
    /// No config at all (the node's only possible top-level value, never a
    /// config's): the MachineConfig never reached this node, or the wrong
    /// `--config-dir`. Not "ok": a monitoring check must not call a node
    /// healthy that was never set up. 3 is Nagios's UNKNOWN.
    Unconfigured = 3,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Failed => "failed",
            Health::Unconfigured => "unconfigured",
        }
    }
}

/// `status --json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub kernel: String,
    pub boot_id: Option<String>,
    /// The worst config's health; the exit code.
    pub health: Health,
    pub exit_code: u8,
    /// Present when SELinux is on (docs/security.md#selinux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<crate::selinux::Status>,
    /// What the node's signature policy means for driver images
    /// (docs/security.md#image-signatures).
    pub signatures: String,
    pub configs: Vec<ConfigStatus>,
    /// Where the configs were read from (for the text's messages).
    #[serde(skip)]
    pub config_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct ConfigStatus {
    pub name: String,
    /// The image reference for this kernel (variables substituted).
    pub image: Option<String>,
    /// Manifest digest of the stored tree, else of the last pull.
    pub digest: Option<String>,
    /// Registry (`host/repo`, a mirror's when one served it) or OCI layout
    /// directory the stored tree came from.
    pub source: Option<String>,
    pub kernel: String,
    pub state: State,
    pub health: Health,
    /// The stored tree (`<store>/<name>/<kernel>/sha256-…`).
    pub tree: Option<PathBuf>,
    /// The stored tree's SELinux label, when SELinux is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_label: Option<String>,
    /// When the stored tree was published (RFC 3339).
    pub pulled_at: Option<String>,
    pub modules: Vec<ModuleStatus>,
    pub last_pull: Option<Phase>,
    pub last_replace: Option<Phase>,
    /// Reboots `pull` requested for this kernel, and the guard's limit.
    pub reboots: u32,
    pub max_reboots: u32,
    /// The crash-loop guard's record of the stored tree (absent when this
    /// tree on this kernel, with this config, has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_guard: Option<CrashGuard>,
    /// What the agent does next, as one sentence.
    pub next_action: String,
    /// The kernels of the OS deployment staged for the next boot, and
    /// where this config stands for each (empty when nothing is staged).
    pub pending_kernels: Vec<PendingKernel>,
    /// A config or state file that could not be read.
    pub error: Option<String>,
}

/// One kernel of the staged deployment, for one config.
#[derive(Debug, Serialize)]
pub struct PendingKernel {
    pub kernel: String,
    /// `<stateroot>/<checksum>.<serial>`.
    pub deployment: String,
    /// `pulled`, `not-yet`, `failed` or `no-mapping`.
    pub state: &'static str,
    /// The stored tree's manifest digest (`pulled`).
    pub digest: Option<String>,
    /// The failure (`failed`), or what happens next.
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct ModuleStatus {
    pub name: String,
    /// Parameters `replace` loads it with (from the config).
    pub parameters: String,
    /// `srcversion` of the stored tree's file.
    pub image_srcversion: Option<String>,
    /// `srcversion` of the module the kernel runs.
    pub loaded_srcversion: Option<String>,
    /// Where `loaded_srcversion` comes from: `sysfs` (/sys/module) or
    /// `replace.json` (no /sys/module, e.g. in a container).
    pub loaded_from: Option<&'static str>,
    /// The kernel runs the stored tree's build of this module.
    pub current: bool,
}

/// `crash_guard` in `status --json` (docs/replace.md#crash-loop-guard).
#[derive(Debug, Serialize)]
pub struct CrashGuard {
    /// Earlier boots that loaded the tree and never reached the health point.
    pub unconfirmed_boots: Vec<crate::store::state::Attempt>,
    pub max_unconfirmed_boots: u32,
    pub quarantined: bool,
    /// When `replace` quarantined it.
    pub quarantined_at: Option<String>,
    pub confirmed_boot: Option<String>,
    pub confirmed_at: Option<String>,
}

/// The last result of one phase.
#[derive(Debug, Serialize)]
pub struct Phase {
    pub result: &'static str,
    pub message: String,
    pub kernel: String,
    pub started: String,
    pub finished: String,
    /// Absent in files from agents before this field.
    pub duration_ms: Option<u64>,
    /// Replace only: written during the running boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub this_boot: Option<bool>,
}

pub fn run(opts: &cli::StatusOpts) -> Result<ExitCode> {
    let mut kernel = Real::new();
    if let Some(sys) = &opts.sys_root {
        kernel = kernel.with_sys(sys);
    }
    let report = match RunContext::from_common(&opts.common).and_then(|c| collect(&c, &kernel)) {
        Ok(r) => r,
        Err(e) => {
            // A status that cannot be read is a failed check, not "degraded".
            log::error!("status: {e:#}");
            return Ok(ExitCode::from(Health::Failed as u8));
        }
    };
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::from(report.exit_code))
}

/// The report on `ctx`'s configs, with the module and boot facts read
/// through `kernel`.
pub fn collect(ctx: &RunContext, kernel: &Real) -> Result<Report> {
    let boot_id = kernel.boot_id();
    let node_root = crate::node::root();
    let env = Env {
        config_dir: &ctx.config_dir,
        store: &ctx.store,
        kver: &ctx.kernel,
        kernel: kernel.has_module_sysfs().then_some(kernel),
        boot_id: boot_id.as_deref(),
        joined: crate::node::joined(&node_root),
    };
    let pending = crate::node::pending(&node_root, &ctx.kernel);
    let configs: Vec<ConfigStatus> = ctx
        .configs
        .iter()
        .map(|(name, cfg)| {
            let mut st = config_status(&env, name, cfg);
            match &pending {
                Ok(p) => pending_status(&env, name, cfg, p, &mut st),
                Err(e) => {
                    let e = format!("{e:#}");
                    st.error = Some(st.error.map_or(e.clone(), |o| format!("{o}; {e}")));
                    st.health = st.health.max(Health::Degraded);
                }
            }
            st
        })
        .collect();
    let health = configs
        .iter()
        .map(|c| c.health)
        .max()
        .unwrap_or(Health::Unconfigured);
    Ok(Report {
        version: JSON_VERSION,
        kernel: ctx.kernel.clone(),
        boot_id,
        health,
        exit_code: health as u8,
        selinux: crate::selinux::status(Path::new("/"), &ctx.store.root),
        signatures: crate::policy::NodePolicy::status_line(Path::new("/")),
        configs,
        config_dir: ctx.config_dir.clone(),
    })
}

/// The next action after a pull that failed on the image itself: the
/// same image fails the same way, so "retry" would be false advice.
const NEXT_FIX_IMAGE: &str = "fix the image (see last pull): pulling it again fails the same way; the next pull (at network-online, or now: `systemctl restart kmm-day1-pull`) fetches the fixed one";
const NEXT_FIX_IMAGE_LOADED: &str = "fix the image (see last pull): pulling it again fails the same way; the loaded tree stays until a fixed one is pulled";

/// After the signature policy refused the image or could not be used.
const NEXT_REFUSED: &str = "blocked: the node's signature policy refused the image (see last pull): sign it for the policy, or fix /etc/containers/policy.json; then `systemctl restart kmm-day1-pull`";
const NEXT_REFUSED_LOADED: &str = "blocked: the node's signature policy refused the image (see last pull); the loaded tree stays until an image the policy accepts is pulled";

struct Env<'a> {
    config_dir: &'a Path,
    store: &'a Store,
    kver: &'a str,
    /// The kernel's per-module sysfs, when this system has one.
    kernel: Option<&'a Real>,
    boot_id: Option<&'a str>,
    /// The node has joined the cluster: no reboot of ours (`node::joined`).
    joined: bool,
}

/// Fills `pending_kernels`; a failed pull for one of them makes the
/// config degraded (that kernel would boot on the in-tree driver).
fn pending_status(
    env: &Env<'_>,
    name: &str,
    cfg: &NodeConfig,
    pending: &[crate::node::Pending],
    st: &mut ConfigStatus,
) {
    for p in pending {
        let k = p.kernel.as_str();
        let mut pk = PendingKernel {
            kernel: p.kernel.clone(),
            deployment: p.deployment.clone(),
            state: "not-yet",
            digest: None,
            message:
                "pulled in the shutdown before the reboot into it (kmm-day1-pull-staged.service)"
                    .into(),
        };
        let last: Option<PullState> = state::load(&env.store.staged_pull_state_path(name, k))
            .ok()
            .flatten();
        if !matches!(cfg.resolve(name, k), Ok(Some(_))) {
            pk.state = "no-mapping";
            pk.message = format!("none: no kernel mapping matches kernel {k}");
        } else if let Ok(Some(meta)) = env.store.current_meta(name, k) {
            pk.state = "pulled";
            pk.digest = Some(meta.digest);
            pk.message = "the first boot of this kernel swaps with no reboot".into();
        } else if let Some(l) =
            last.filter(|l| matches!(l.result, PullResult::Failed | PullResult::Refused))
        {
            pk.state = "failed";
            pk.message = l.message;
            st.health = st.health.max(Health::Degraded);
        }
        st.pending_kernels.push(pk);
    }
}

fn config_status(env: &Env<'_>, name: &str, cfg: &NodeConfig) -> ConfigStatus {
    let (store, kver) = (env.store, env.kver);
    let mut st = ConfigStatus {
        name: name.to_string(),
        image: None,
        digest: None,
        source: None,
        kernel: kver.to_string(),
        state: State::Failed,
        health: Health::Failed,
        tree: None,
        tree_label: None,
        pulled_at: None,
        modules: Vec::new(),
        last_pull: None,
        last_replace: None,
        reboots: 0,
        max_reboots: cfg.pull.max_reboots_per_kernel,
        crash_guard: None,
        next_action: String::new(),
        pending_kernels: Vec::new(),
        error: None,
    };
    let mut errors = Vec::new();
    let pull: Option<PullState> = state::load(&store.pull_state_path(name))
        .map_err(|e| errors.push(format!("{e:#}")))
        .ok()
        .flatten();
    let replace: Option<ReplaceState> = state::load(&store.replace_state_path(name))
        .map_err(|e| errors.push(format!("{e:#}")))
        .ok()
        .flatten();
    let meta: Option<TreeMeta> = store
        .current_meta(name, kver)
        .map_err(|e| errors.push(format!("{e:#}")))
        .ok()
        .flatten();
    st.last_pull = pull.as_ref().map(|p| Phase {
        result: p.result.as_str(),
        message: p.message.clone(),
        kernel: p.kernel.clone(),
        started: p.started.clone(),
        finished: p.finished.clone(),
        duration_ms: (p.duration_ms > 0).then_some(p.duration_ms),
        this_boot: None,
    });
    let replace_this_boot = |r: &ReplaceState| env.boot_id.is_some_and(|b| b == r.boot_id);
    st.last_replace = replace.as_ref().map(|r| Phase {
        result: r.result.as_str(),
        message: r.message.clone(),
        kernel: r.kernel.clone(),
        started: r.started.clone(),
        finished: r.finished.clone(),
        duration_ms: (r.duration_ms > 0).then_some(r.duration_ms),
        this_boot: Some(replace_this_boot(r)),
    });
    st.reboots = pull
        .as_ref()
        .and_then(|p| p.reboots.get(kver).copied())
        .unwrap_or(0);
    // Only a pull for this kernel says anything about this kernel.
    let pull_here = pull.as_ref().filter(|p| p.kernel == kver);
    let pull_failed =
        pull_here.is_some_and(|p| matches!(p.result, PullResult::Failed | PullResult::Refused));
    let refused = pull_here.is_some_and(|p| p.result == PullResult::Refused);
    let guard = pull_here.is_some_and(|p| p.reboot_guard);
    let defect = pull_failed && pull_here.is_some_and(|p| p.image_defect);

    let resolved = match cfg.resolve(name, kver) {
        Ok(r) => r,
        Err(e) => {
            st.error = Some(format!("{e}"));
            st.next_action = format!(
                "blocked: the config cannot be resolved for kernel {kver}: fix {}",
                env.config_dir.join(format!("{name}.toml")).display()
            );
            return st;
        }
    };
    let Some(resolved) = resolved else {
        st.state = State::NoMapping;
        st.health = Health::Ok;
        st.next_action = format!("none: no kernel mapping matches kernel {kver}");
        return st;
    };
    st.image = Some(resolved.reference.clone());
    st.digest = pull_here.and_then(|p| p.digest.clone());
    st.source = pull_here.and_then(|p| p.source.clone());
    let pull_file = store.pull_state_path(name);
    let (reboots, max) = (st.reboots, cfg.pull.max_reboots_per_kernel);
    let guard_action = move || {
        format!(
            "blocked: reboot guard reached ({reboots} of {max} reboots for kernel {kver}): fix the image, then `rm {}` and reboot",
            pull_file.display()
        )
    };

    let tree = store.current_tree(name, kver);
    let (Some(tree), Some(meta)) = (tree, meta) else {
        if pull_failed {
            st.state = State::Failed;
            st.health = Health::Failed;
            st.next_action = if guard {
                guard_action()
            } else if refused {
                NEXT_REFUSED.to_string()
            } else if defect {
                NEXT_FIX_IMAGE.to_string()
            } else {
                "retry pull at next network-online (or now: `systemctl restart kmm-day1-pull`); see last pull".to_string()
            };
        } else {
            st.state = State::Pending;
            st.health = Health::Degraded;
            st.next_action = "pull at next network-online (kmm-day1-pull.service)".to_string();
        }
        st.error = (!errors.is_empty()).then(|| errors.join("; "));
        return st;
    };
    st.digest = Some(meta.digest.clone());
    st.source = Some(meta.source.clone());
    st.pulled_at = Some(meta.pulled.clone());

    // The replace run that speaks for the running kernel and this tree.
    let replace_now = replace.as_ref().filter(|r| {
        r.kernel == kver
            && replace_this_boot(r)
            && r.digest.as_deref() == Some(meta.digest.as_str())
    });
    st.modules = module_status(env, cfg, &tree, replace_now);
    let key = guard::Key {
        kernel: kver.to_string(),
        digest: meta.digest.clone(),
        config: guard::config_hash(env.config_dir, name),
    };
    let max_unconfirmed = cfg.replace.max_unconfirmed_boots;
    let record = guard::record(store, name, &key)
        .map_err(|e| errors.push(format!("{e:#}")))
        .ok()
        .flatten();
    let quarantine = record
        .as_ref()
        .and_then(|r| guard::quarantined(r, env.boot_id.unwrap_or_default(), max_unconfirmed));
    st.crash_guard = record.map(|r| CrashGuard {
        unconfirmed_boots: r
            .unconfirmed
            .into_iter()
            .filter(|a| Some(a.boot_id.as_str()) != env.boot_id)
            .collect(),
        max_unconfirmed_boots: max_unconfirmed,
        quarantined: quarantine.is_some(),
        quarantined_at: r.quarantined_at,
        confirmed_boot: r.confirmed_boot,
        confirmed_at: r.confirmed_at,
    });
    let all_current = !st.modules.is_empty() && st.modules.iter().all(|m| m.current);
    if crate::selinux::mode(Path::new("/")).is_some() {
        st.tree_label = crate::selinux::label(&tree);
    }
    st.tree = Some(tree);
    let after = match cfg.pull.after_pull {
        AfterPull::Live => "swap at next boot (kmm-day1-replace.service), or now: `systemctl restart kmm-day1-replace`",
        _ => "swap at next boot (kmm-day1-replace.service)",
    };
    if all_current {
        st.state = State::Loaded;
        if pull_failed {
            st.health = Health::Degraded;
            st.next_action = if refused {
                NEXT_REFUSED_LOADED.to_string()
            } else if defect {
                NEXT_FIX_IMAGE_LOADED.to_string()
            } else {
                "retry pull at next network-online: the last pull failed, the loaded tree stays (see last pull)".to_string()
            };
        } else {
            st.health = Health::Ok;
            st.next_action = "none: up to date".to_string();
        }
    } else {
        match replace_now.map(|r| r.result) {
            _ if quarantine.is_some() => {
                st.state = State::Quarantined;
                st.health = Health::Failed;
            }
            Some(ReplaceResult::NoDevice) => {
                st.state = State::NoDevice;
                st.health = if pull_failed {
                    Health::Degraded
                } else {
                    Health::Ok
                };
            }
            Some(ReplaceResult::RolledBack) => {
                st.state = State::RolledBack;
                st.health = Health::Failed;
            }
            Some(ReplaceResult::Failed) => {
                st.state = State::Failed;
                st.health = Health::Failed;
            }
            // Not swapped yet: on a node the hardware gate keeps on its
            // in-tree driver, that is the end state, not a wait.
            _ if env.kernel.is_some_and(|k| {
                crate::devices::refusal_for_stored(cfg, store, name, kver, k).is_some()
            }) =>
            {
                st.state = State::NoDevice;
                st.health = if pull_failed {
                    Health::Degraded
                } else {
                    Health::Ok
                };
            }
            _ => {
                st.state = State::Pulled;
                st.health = Health::Degraded;
            }
        }
        st.next_action = if guard {
            st.health = Health::Failed;
            guard_action()
        } else if let Some(q) = &quarantine {
            format!(
                "blocked: quarantined by the crash-loop guard after {} boot{} that loaded this tree and never reached the health point ({}): push a fixed image (a new digest is tried again), or `kmm-day1-agent unquarantine --config {name}` to retry this one at the next boot",
                q.boots.len(),
                if q.boots.len() == 1 { "" } else { "s" },
                q.boots_line()
            )
        } else if st.state == State::Pulled && env.joined && cfg.pull.waits_for_mco_when_joined() {
            "swap at the next reboot the MCO orders: the node has joined the cluster, kmm-day1 does not reboot it (pull.reboot_joined_node)".to_string()
        } else if st.state == State::Pulled {
            after.to_string()
        } else if st.state == State::NoDevice {
            "none: no device of this node matches the modules (see last replace); the in-tree driver stays".to_string()
        } else {
            "blocked: the stored modules did not load (see last replace): fix the image; the next boot pulls a new digest and retries the swap".to_string()
        };
    }
    st.error = (!errors.is_empty()).then(|| errors.join("; "));
    st
}

/// Each configured module: the tree's srcversion against the running one.
fn module_status(
    env: &Env<'_>,
    cfg: &NodeConfig,
    tree: &Path,
    replace_now: Option<&ReplaceState>,
) -> Vec<ModuleStatus> {
    let mtree = Tree::open(&tree.join("lib/modules").join(env.kver)).ok();
    cfg.modules
        .iter()
        .map(|m| {
            let canon = module_name_canonical(m);
            let image_srcversion = mtree
                .as_ref()
                .and_then(|t| t.module(m))
                .and_then(|e| modinfo::read(&e.path).ok())
                .and_then(|i| i.srcversion);
            let (loaded_srcversion, loaded_from) = match env.kernel {
                Some(k) => (k.srcversion(&canon), Some("sysfs")),
                None => match replace_now.filter(|r| {
                    matches!(
                        r.result,
                        ReplaceResult::Loaded | ReplaceResult::AlreadyLoaded
                    )
                }) {
                    Some(r) => (
                        r.loaded
                            .iter()
                            .find(|l| module_name_canonical(&l.name) == canon)
                            .and_then(|l| l.srcversion.clone()),
                        Some("replace.json"),
                    ),
                    None => (None, None),
                },
            };
            // `already-loaded` runs record no modules: the srcversion check
            // was theirs, and it was the tree's.
            let (loaded_srcversion, loaded_from) = match (loaded_srcversion, loaded_from) {
                (None, Some("replace.json"))
                    if replace_now.is_some_and(|r| r.result == ReplaceResult::AlreadyLoaded) =>
                {
                    (image_srcversion.clone(), Some("replace.json"))
                }
                other => other,
            };
            // Without a srcversion to compare (no MODULE_VERSION), this
            // boot's successful replace is the evidence, as long as the
            // kernel still has the module.
            let current = match &image_srcversion {
                Some(_) => loaded_srcversion == image_srcversion,
                None => {
                    replace_now.is_some_and(|r| {
                        r.result == ReplaceResult::Loaded
                            && r.loaded
                                .iter()
                                .any(|l| module_name_canonical(&l.name) == canon)
                    }) && env.kernel.is_none_or(|k| k.has_module(&canon))
                }
            };
            ModuleStatus {
                name: m.clone(),
                parameters: cfg.parameters_for(m),
                current,
                image_srcversion,
                loaded_srcversion,
                loaded_from,
            }
        })
        .collect()
}

fn ms(d: Option<u64>) -> String {
    match d {
        Some(ms) => format!(", {}s", Tenths::ms(ms)),
        None => String::new(),
    }
}

/// Human text.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "kernel {}: {} (exit {})",
        r.kernel,
        r.health.as_str(),
        r.exit_code
    );
    if let Some(se) = &r.selinux {
        let _ = writeln!(s, "selinux: {}", se.line());
    }
    let _ = writeln!(s, "signatures: {}", r.signatures);
    if r.configs.is_empty() {
        let _ = writeln!(
            s,
            "no configs in {}: nothing is set up on this node (is the MachineConfig applied to its pool?)",
            r.config_dir.display()
        );
    }
    for c in &r.configs {
        let _ = writeln!(
            s,
            "\n{}: {} ({})",
            c.name,
            c.state.as_str(),
            c.health.as_str()
        );
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
        let _ = writeln!(s, "  image:    {}", opt(&c.image));
        let _ = writeln!(s, "  digest:   {}", opt(&c.digest));
        let _ = writeln!(s, "  source:   {}", opt(&c.source));
        if let Some(t) = &c.tree {
            let _ = writeln!(
                s,
                "  tree:     {} (pulled {}{})",
                t.display(),
                c.pulled_at.as_deref().unwrap_or("-"),
                c.tree_label
                    .as_deref()
                    .map(|l| format!(", SELinux label {l}"))
                    .unwrap_or_default()
            );
        }
        for m in &c.modules {
            let _ = writeln!(
                s,
                "  module:   {} image srcversion {}, running {}{}{}",
                m.name,
                m.image_srcversion.as_deref().unwrap_or("-"),
                m.loaded_srcversion.as_deref().unwrap_or("not loaded"),
                m.loaded_from.map(|f| format!(" ({f})")).unwrap_or_default(),
                if m.parameters.is_empty() {
                    String::new()
                } else {
                    format!(", parameters `{}`", m.parameters)
                }
            );
        }
        if let Some(p) = &c.last_pull {
            let _ = writeln!(
                s,
                "  pull:     {} at {}{}: {}",
                p.result,
                p.finished,
                ms(p.duration_ms),
                p.message
            );
        }
        if let Some(p) = &c.last_replace {
            let _ = writeln!(
                s,
                "  replace:  {} at {}{}{}: {}",
                p.result,
                p.finished,
                ms(p.duration_ms),
                if p.this_boot == Some(true) {
                    ", this boot"
                } else {
                    ", an earlier boot"
                },
                p.message
            );
        }
        let _ = writeln!(
            s,
            "  reboots:  {} of {} for this kernel",
            c.reboots, c.max_reboots
        );
        if let Some(g) = &c.crash_guard {
            let _ = writeln!(
                s,
                "  guard:    {}{} of {} unconfirmed boots{}",
                if g.quarantined { "quarantined, " } else { "" },
                g.unconfirmed_boots.len(),
                g.max_unconfirmed_boots,
                g.confirmed_at
                    .as_deref()
                    .map(|t| format!(", last confirmed at {t}"))
                    .unwrap_or_default()
            );
        }
        for p in &c.pending_kernels {
            let _ = writeln!(
                s,
                "  staged:   kernel {} ({}): {}{}: {}",
                p.kernel,
                p.deployment,
                p.state,
                p.digest
                    .as_deref()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default(),
                p.message
            );
        }
        if let Some(e) = &c.error {
            let _ = writeln!(s, "  error:    {e}");
        }
        let _ = writeln!(s, "  next:     {}", c.next_action);
    }
    s
}
