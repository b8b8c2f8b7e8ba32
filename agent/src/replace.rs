//! `replace` (see `cli::REPLACE_HELP`, docs/replace.md): at every boot,
//! before the network, swap the in-tree modules for the stored out-of-tree
//! ones — or change nothing. The decisions are in `plan`; this file carries
//! a plan out and, if any step fails, puts the in-tree modules back.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kmm_day1_config::{load_dir, module_name_canonical, NodeConfig};
use serde::Serialize;

use crate::cli;
use crate::kernel::{self, Kernel, KernelError};
use crate::log;
use crate::modules::Tree;
use crate::notify;
use crate::plan::{self, Inputs, LoadStep, ModinfoCache, Plan, Source};
use crate::status;
use crate::store::state::{self, LoadedModule, ReplaceResult, ReplaceState, TreeMeta};
use crate::store::{Store, StoreLock, META_FILE};
use crate::units;

/// `--dry-run --json` output (documented in docs/replace.md).
#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    /// `status`'s health and exit code (absent with `--modules-root`,
    /// which plans from a tree outside the store `status` reports on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<status::Health>,
    pub exit_code: u8,
    pub configs: Vec<ConfigReport>,
}

#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub name: String,
    /// `planned`, `up-to-date`, `waiting-for-pull`, `no-mapping` or `error`.
    pub status: &'static str,
    /// The config's state and health as `status` reports them (absent
    /// with `--modules-root`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<status::State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<status::Health>,
    /// The module tree planned from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

pub fn run(opts: &cli::ReplaceOpts) -> Result<ExitCode> {
    let kver = match &opts.common.kernel_release {
        Some(k) => k.clone(),
        None => kernel::running_release().context("reading the running kernel's release")?,
    };
    let configs = load_dir(&opts.common.config_dir)?;
    let store = Store::new(&opts.common.store);
    let host_root = opts
        .host_modules_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/lib/modules"));
    let host = Tree::open_if_exists(&host_root.join(&kver))?;
    let mut real = kernel::Real::new();

    if opts.dry_run {
        // Nothing is locked or written: a dry run may run beside a real one.
        let mut cache = ModinfoCache::new();
        let mut trees = TreeCache::new();
        let configs = configs
            .iter()
            .map(|(name, cfg)| {
                let ctx = Ctx {
                    store: &store,
                    opts,
                    kver: &kver,
                    host: host.as_ref(),
                };
                plan_config(&ctx, name, cfg, &real, &mut cache, &mut trees)
            })
            .collect();
        let mut report = Report {
            kernel: kver,
            health: None,
            exit_code: 0,
            configs,
        };
        // On the store, the same state, health and exit code as `status`:
        // a script asking "is this node right?" must get one answer from
        // either command. A plan that cannot be made is at least 1 (status
        // does not plan, so it is the one thing the dry run knows better).
        let planned_ok = !report.configs.iter().any(|c| c.status == "error");
        let mut code = u8::from(!planned_ok);
        if opts.modules_root.is_none() {
            let st = status::collect(&cli::StatusOpts {
                common: cli::Common {
                    kernel_release: Some(report.kernel.clone()),
                    ..opts.common.clone()
                },
                json: false,
                sys_root: None,
            })?;
            for c in &mut report.configs {
                if let Some(s) = st.configs.iter().find(|s| s.name == c.name) {
                    c.state = Some(s.state);
                    c.health = Some(s.health);
                }
            }
            report.health = Some(st.health);
            code = code.max(st.exit_code);
        }
        report.exit_code = code;
        if opts.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", render(&report));
        }
        return Ok(ExitCode::from(code));
    }

    let lock = store.lock()?;
    let mut ok = true;
    if configs.is_empty() {
        log::info!(
            "no configs in {}: nothing to do",
            opts.common.config_dir.display()
        );
    }
    for (name, cfg) in &configs {
        let ctx = Ctx {
            store: &store,
            opts,
            kver: &kver,
            host: host.as_ref(),
        };
        ok &= replace_config(&ctx, &lock, name, cfg, &mut real)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The module tree to act on: `--modules-root` or the store's current tree.
fn image_tree(
    store: &Store,
    opts: &cli::ReplaceOpts,
    kver: &str,
    name: &str,
    cfg: &NodeConfig,
) -> Option<(PathBuf, Option<String>, Option<String>)> {
    match &opts.modules_root {
        Some(root) => {
            let firmware = cfg.firmware_dir.as_deref().and_then(|fw| {
                image_root_of(root, &cfg.module_root).map(|r| r.join(fw.trim_start_matches('/')))
            });
            Some((
                root.join(kver),
                None,
                firmware
                    .filter(|f| non_empty_dir(f))
                    .map(|f| f.display().to_string()),
            ))
        }
        None => {
            let tree = store.current_tree(name, kver)?;
            // The digest pull recorded, not one parsed back out of a path.
            let digest = state::load::<TreeMeta>(&tree.join(META_FILE))
                .ok()
                .flatten()
                .map(|m| m.digest)
                .filter(|d| !d.is_empty());
            let fw = tree.join("firmware");
            let firmware = non_empty_dir(&fw).then(|| fw.display().to_string());
            Some((tree.join("lib/modules").join(kver), digest, firmware))
        }
    }
}

/// `X/opt/lib/modules` with module_root `/opt` → `X`: where an extracted
/// image's firmware_dir is.
fn image_root_of(modules_root: &Path, module_root: &str) -> Option<PathBuf> {
    let mut p = modules_root.to_path_buf();
    if !p.ends_with("lib/modules") {
        return None;
    }
    p.pop();
    p.pop();
    let rel = Path::new(module_root.trim_start_matches('/'));
    if !rel.as_os_str().is_empty() {
        if !p.ends_with(rel) {
            return None;
        }
        for _ in rel.components() {
            p.pop();
        }
    }
    Some(p)
}

fn non_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some())
}

/// What every config of one run shares.
struct Ctx<'a> {
    store: &'a Store,
    opts: &'a cli::ReplaceOpts,
    kver: &'a str,
    host: Option<&'a Tree>,
}

/// Trees opened once per run: with `--modules-root` every config plans from
/// the same one (the differential test has thousands of configs).
type TreeCache = HashMap<PathBuf, Tree>;

fn plan_config(
    ctx: &Ctx<'_>,
    name: &str,
    cfg: &NodeConfig,
    kernel: &dyn Kernel,
    cache: &mut ModinfoCache,
    trees: &mut TreeCache,
) -> ConfigReport {
    let Ctx {
        store,
        opts,
        kver,
        host,
    } = *ctx;
    let mut report = ConfigReport {
        name: name.to_string(),
        status: "error",
        state: None,
        health: None,
        tree: None,
        digest: None,
        error: None,
        plan: None,
    };
    let resolved = match cfg.resolve(name, kver) {
        Ok(Some(r)) => r,
        Ok(None) => {
            report.status = "no-mapping";
            return report;
        }
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    let Some((dir, digest, firmware_path)) = image_tree(store, opts, kver, name, cfg) else {
        report.status = "waiting-for-pull";
        return report;
    };
    report.tree = Some(dir.clone());
    report.digest = digest;
    if !trees.contains_key(&dir) {
        match Tree::open(&dir) {
            Ok(t) => {
                trees.insert(dir.clone(), t);
            }
            Err(e) => {
                report.error = Some(format!("{e:#}"));
                return report;
            }
        }
    }
    let result = plan::plan(
        &Inputs {
            cfg,
            in_tree_remove: &resolved.in_tree_remove,
            image: &trees[&dir],
            host,
            kernel_release: kver,
            firmware_path,
        },
        kernel,
        cache,
    );
    match result {
        Ok(p) => {
            report.status = if p.up_to_date {
                "up-to-date"
            } else {
                "planned"
            };
            report.plan = Some(p);
        }
        Err(e) => report.error = Some(format!("{e:#}")),
    }
    report
}

/// Human text of a dry run.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    match r.health {
        Some(h) => {
            let _ = writeln!(
                s,
                "kernel {}: {} (exit {})",
                r.kernel,
                h.as_str(),
                r.exit_code
            );
        }
        None => {
            let _ = writeln!(s, "kernel {}", r.kernel);
        }
    }
    if r.configs.is_empty() {
        let _ = writeln!(s, "no configs: nothing to plan");
    }
    for c in &r.configs {
        let _ = write!(s, "\n{}: ", c.name);
        if let (Some(st), Some(h)) = (c.state, c.health) {
            let _ = write!(s, "{} ({}): ", st.as_str(), h.as_str());
        }
        match c.status {
            "no-mapping" => {
                let _ = writeln!(s, "no kernel mapping matches this kernel: nothing to do");
            }
            "waiting-for-pull" => {
                let _ = writeln!(
                    s,
                    "no verified tree in the store for this kernel: waiting for pull"
                );
            }
            "error" => {
                let _ = writeln!(
                    s,
                    "cannot plan: {}",
                    c.error.as_deref().unwrap_or("unknown error")
                );
            }
            _ => {
                let p = c.plan.as_ref();
                let _ = writeln!(
                    s,
                    "{} (tree {}{})",
                    if c.status == "up-to-date" {
                        "already loaded with the image's srcversion: nothing to do"
                    } else {
                        "plan"
                    },
                    c.tree
                        .as_deref()
                        .map(|t| t.display().to_string())
                        .unwrap_or_default(),
                    c.digest
                        .as_deref()
                        .map(|d| format!(", {d}"))
                        .unwrap_or_default()
                );
                let Some(p) = p.filter(|_| c.status == "planned") else {
                    continue;
                };
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "(none)".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                let _ = writeln!(s, "  remove: {}", list(&p.remove));
                if let Some(fw) = &p.firmware_path {
                    let _ = writeln!(s, "  firmware path: {fw}");
                }
                let _ = writeln!(s, "  load, in order:");
                for (i, l) in p.load.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "    {}. {} {}{} ({}{})",
                        i + 1,
                        l.name,
                        l.path.display(),
                        if l.params.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", l.params)
                        },
                        match l.source {
                            Source::Image => "image",
                            Source::Host => "host",
                        },
                        if l.signed { ", signed" } else { "" }
                    );
                }
                if !p.kept.is_empty() {
                    let _ = writeln!(s, "  already loaded, kept: {}", p.kept.join(", "));
                }
                if !p.builtin.is_empty() {
                    let _ = writeln!(s, "  built into the kernel: {}", p.builtin.join(", "));
                }
            }
        }
    }
    s
}

/// Replace one config's modules; false when it failed (after rollback).
fn replace_config(
    ctx: &Ctx<'_>,
    lock: &StoreLock,
    name: &str,
    cfg: &NodeConfig,
    kernel: &mut dyn Kernel,
) -> Result<bool> {
    let (store, kver, host) = (ctx.store, ctx.kver, ctx.host);
    let started = units::now_rfc3339();
    let t0 = Instant::now();
    let report = plan_config(
        ctx,
        name,
        cfg,
        &*kernel,
        &mut ModinfoCache::new(),
        &mut TreeCache::new(),
    );
    let mut st = ReplaceState {
        kernel: kver.to_string(),
        digest: report.digest.clone(),
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        started,
        ..ReplaceState::default()
    };
    let plan_ms = t0.elapsed().as_millis();
    let resolved_ref = cfg
        .resolve(name, kver)
        .ok()
        .flatten()
        .map(|r| r.reference)
        .unwrap_or_default();
    let ok = match (report.status, report.plan) {
        ("no-mapping", _) => {
            log::info!("{name}: no kernel mapping matches {kver}: nothing to do");
            // Not an outcome worth a state file: nothing was or will be done.
            return Ok(true);
        }
        ("waiting-for-pull", _) => {
            let msg = format!("{name}: no verified tree for {kver} in the store yet: waiting for pull (the in-tree driver stays)");
            notify::status(&msg);
            st.result = ReplaceResult::WaitingForPull;
            st.message = msg;
            true
        }
        ("up-to-date", _) => {
            let msg = format!(
                "{name}: {} already loaded with the image's srcversion: nothing to do",
                cfg.modules.join(", ")
            );
            notify::status(&msg);
            st.result = ReplaceResult::AlreadyLoaded;
            st.message = msg;
            true
        }
        ("planned", Some(p)) => {
            let outcome = execute(&p, host, kernel);
            let total_ms = t0.elapsed().as_millis();
            st.removed = outcome.removed.clone();
            st.loaded = outcome
                .loaded
                .iter()
                .map(|l| LoadedModule {
                    name: l.name.clone(),
                    path: l.path.display().to_string(),
                    srcversion: l.srcversion.clone(),
                })
                .collect();
            match outcome.error {
                None => {
                    st.result = ReplaceResult::Loaded;
                    st.message = format!(
                        "{name}: removed [{}], loaded [{}] (plan {plan_ms} ms, total {total_ms} ms)",
                        outcome.removed.join(", "),
                        outcome.loaded.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")
                    );
                    notify::status(&st.message);
                    true
                }
                Some(e) => {
                    st.result = if outcome.restored {
                        ReplaceResult::RolledBack
                    } else {
                        ReplaceResult::Failed
                    };
                    st.message = format!("{name}: {e}; {} ({total_ms} ms)", outcome.state);
                    st.loaded.clear();
                    notify::status(&st.message);
                    false
                }
            }
        }
        (_, _) => {
            let msg = format!(
                "{name}: {}; nothing was changed, the in-tree driver stays",
                report.error.as_deref().unwrap_or("cannot plan")
            );
            notify::status(&msg);
            st.result = ReplaceResult::Failed;
            st.message = msg;
            false
        }
    };
    st.finished = units::now_rfc3339();
    st.duration_ms = t0.elapsed().as_millis() as u64;
    // The config's one journal line, with fields to select it by.
    let (priority, id) = match st.result {
        ReplaceResult::Loaded => (log::Priority::Notice, log::id::REPLACE_LOADED),
        ReplaceResult::AlreadyLoaded | ReplaceResult::WaitingForPull => {
            (log::Priority::Info, log::id::REPLACE_NOOP)
        }
        ReplaceResult::RolledBack | ReplaceResult::Failed => {
            (log::Priority::Error, log::id::REPLACE_FAILED)
        }
    };
    log::send(
        priority,
        &[
            ("MESSAGE_ID", id),
            ("KMM_DAY1_CONFIG", name),
            ("KMM_DAY1_IMAGE", &resolved_ref),
            ("KMM_DAY1_DIGEST", st.digest.as_deref().unwrap_or("")),
            ("KMM_DAY1_KERNEL", kver),
            ("KMM_DAY1_RESULT", st.result.as_str()),
        ],
        format_args!("{}", st.message),
    );
    state::save(lock, &store.replace_state_path(name), &st)?;
    Ok(ok)
}

/// What `execute` did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub removed: Vec<String>,
    pub loaded: Vec<LoadStep>,
    /// What failed, if anything did.
    pub error: Option<String>,
    /// After a failure: whether every removed module is back.
    pub restored: bool,
    /// One sentence on the node's state after a failure.
    pub state: String,
}

/// Carry out `plan`: remove, point firmware, load, verify; on any failure
/// roll back (unload what this run loaded, reload what it removed).
pub fn execute(plan: &Plan, host: Option<&Tree>, kernel: &mut dyn Kernel) -> Outcome {
    let mut out = Outcome::default();
    let old_firmware = kernel.firmware_path();
    let mut firmware_set = false;
    let result = (|| -> Result<()> {
        for m in &plan.remove {
            kernel
                .unload(m)
                .map_err(|e| anyhow::anyhow!("{}", unload_error(m, &e)))?;
            out.removed.push(m.clone());
        }
        if let Some(fw) = &plan.firmware_path {
            kernel
                .set_firmware_path(fw)
                .map_err(|e| anyhow::anyhow!("setting firmware_class.path to {fw}: {e}"))?;
            firmware_set = true;
            log::info!("firmware search path set to {fw}");
        }
        for step in &plan.load {
            kernel
                .load(&step.name, &step.path, &step.params)
                .map_err(|e| anyhow::anyhow!("{}", load_error(step, &e, &*kernel)))?;
            out.loaded.push(step.clone());
        }
        // Verify: the kernel now runs the image's build of each module.
        for step in plan.load.iter().filter(|s| s.source == Source::Image) {
            let want = step.srcversion.as_deref();
            let have = kernel.srcversion(&step.name);
            if want.is_some() && have.as_deref() != want {
                bail!(
                    "`{}` loaded but /sys/module/{}/srcversion is {} instead of {}",
                    step.name,
                    step.name,
                    have.as_deref().unwrap_or("missing"),
                    want.unwrap_or_default()
                );
            }
        }
        Ok(())
    })();
    let Err(e) = result else {
        return out;
    };
    out.error = Some(format!("{e:#}"));
    if out.removed.is_empty() && out.loaded.is_empty() && !firmware_set {
        out.restored = true;
        out.state = "nothing was changed, the in-tree driver stays".into();
        return out;
    }
    let mut problems = Vec::new();
    for step in out.loaded.iter().rev() {
        if let Err(e) = kernel.unload(&step.name) {
            problems.push(format!("could not unload `{}`: {e}", step.name));
        }
    }
    if firmware_set {
        if let Err(e) = kernel.set_firmware_path(old_firmware.as_deref().unwrap_or("")) {
            problems.push(format!("could not restore firmware_class.path: {e}"));
        }
    }
    let reloaded = reload_in_tree(&out.removed, host, kernel, &mut problems);
    out.restored = problems.is_empty();
    out.state = if out.restored {
        if out.removed.is_empty() {
            "rolled back: unloaded what this run loaded; the node is as before".into()
        } else {
            format!(
                "rolled back: in-tree {} reloaded; the node is as before",
                reloaded.join(", ")
            )
        }
    } else {
        format!(
            "rollback incomplete ({}): the node may be without its driver",
            problems.join("; ")
        )
    };
    out
}

/// Reload removed in-tree modules (held ones first, so holders find them)
/// from the host's tree, with the host's dependencies and no parameters.
fn reload_in_tree(
    removed: &[String],
    host: Option<&Tree>,
    kernel: &mut dyn Kernel,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let mut reloaded = Vec::new();
    if removed.is_empty() {
        return reloaded;
    }
    let Some(host) = host else {
        problems.push(format!(
            "no host module tree to reload {} from",
            removed.join(", ")
        ));
        return reloaded;
    };
    let mut cache = ModinfoCache::new();
    for m in removed.iter().rev() {
        let order = match plan::resolve(host, None, std::slice::from_ref(m), &mut cache) {
            Ok((order, _)) => order,
            Err(e) => {
                problems.push(format!("cannot reload `{m}`: {e:#}"));
                continue;
            }
        };
        let loaded: Vec<String> = kernel
            .loaded()
            .unwrap_or_default()
            .into_iter()
            .map(|l| module_name_canonical(&l.name))
            .collect();
        for (name, path, _) in order {
            if loaded.contains(&name) {
                continue;
            }
            match kernel.load(&name, &path, "") {
                Ok(()) => {}
                Err(KernelError::Errno(libc::EEXIST)) => {}
                Err(e) => {
                    problems.push(format!(
                        "could not reload `{name}` from {}: {e}",
                        path.display()
                    ));
                    break;
                }
            }
        }
        reloaded.push(m.clone());
    }
    reloaded
}

fn unload_error(m: &str, e: &KernelError) -> String {
    match e.errno() {
        Some(libc::EWOULDBLOCK | libc::EBUSY) => {
            format!("cannot remove `{m}`: it is in use (it gained a user after the plan was made)")
        }
        Some(libc::EPERM) => format!("cannot remove `{m}`: not permitted (CAP_SYS_MODULE needed)"),
        Some(libc::ENOENT) => format!("cannot remove `{m}`: it is not loaded any more"),
        _ => format!("cannot remove `{m}`: {e}"),
    }
}

/// A load error as a sentence that says what to do.
pub fn load_error(step: &LoadStep, e: &KernelError, kernel: &dyn Kernel) -> String {
    let (m, p) = (&step.name, step.path.display());
    match e.errno() {
        Some(libc::EEXIST) => {
            let in_proc = kernel
                .loaded()
                .is_ok_and(|l| l.iter().any(|l| module_name_canonical(&l.name) == *m));
            if in_proc {
                format!("loading `{m}` from {p}: a module named `{m}` is already loaded (add it to in_tree_remove)")
            } else {
                format!("loading `{m}` from {p}: `{m}` is built into the running kernel and cannot be replaced")
            }
        }
        Some(libc::ENOEXEC) => format!("loading `{m}` from {p}: invalid module format: it was built for another kernel or architecture (vermagic/modversions mismatch) or the file is corrupt"),
        Some(libc::EKEYREJECTED) => format!("loading `{m}` from {p}: the kernel rejected the module's signature (EKEYREJECTED): sign it with a key in the kernel's trusted keyring or enrolled with MOK"),
        Some(libc::ENOKEY) => format!("loading `{m}` from {p}: signed with a key the kernel does not know (ENOKEY), and signatures are enforced"),
        Some(libc::EBADMSG) => format!("loading `{m}` from {p}: malformed module signature (EBADMSG)"),
        Some(libc::ENOENT) => {
            let syms = kernel.unknown_symbols(m);
            if syms.is_empty() {
                format!("loading `{m}` from {p}: unknown symbol in module or unknown parameter (see dmesg): a dependency is missing or was built for another kernel")
            } else {
                format!("loading `{m}` from {p}: unknown symbol(s) {}: a dependency is missing or was built for another kernel", syms.join(", "))
            }
        }
        Some(e @ (libc::EACCES | libc::EPERM)) if kernel.selinux_enforcing() => {
            crate::selinux::load_denied(m, &step.path, e)
        }
        Some(libc::EINVAL) => format!("loading `{m}` from {p}: invalid parameters `{}` or invalid module", step.params),
        Some(libc::EPERM) => format!("loading `{m}` from {p}: not permitted (CAP_SYS_MODULE needed, or kernel.modules_disabled=1, or lockdown)"),
        Some(libc::ENOSYS) => format!("loading `{m}`: this kernel has no loadable module support"),
        _ => format!("loading `{m}` from {p}: {e}"),
    }
}

#[cfg(test)]
mod tests;
