//! `replace` (see `cli::REPLACE_HELP`, docs/replace.md): at every boot,
//! before the network, swap the in-tree modules for the stored out-of-tree
//! ones — or change nothing. The decisions are in `plan`; this file carries
//! a plan out and, if any step fails, puts the in-tree modules back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use kmm_day1_config::{module_name_canonical, NodeConfig};

use crate::cli;
use crate::context::RunContext;
use crate::kernel::{self, Kernel, KernelError};
use crate::log;
use crate::modprobe::NodeOptions;
use crate::modules::Tree;
use crate::notify;
use crate::plan::{self, Inputs, LoadStep, ModinfoCache, Plan, Source};
use crate::store::state::{self, LoadedModule, ReplaceResult, ReplaceState, TreeMeta};
use crate::store::{Store, StoreLock, META_FILE};
use crate::units;
use crate::{devices, guard};

/// How `replace` runs, from its command line (or `pull`'s live swap).
#[derive(Debug, Default)]
pub struct Settings {
    /// Print the plan, touch nothing (`--dry-run`).
    pub dry_run: bool,
    pub json: bool,
    /// `--modules-root`: plan from this tree instead of the store's.
    pub modules_root: Option<PathBuf>,
    /// Where the host's module trees are (`/lib/modules`).
    pub host_modules_root: PathBuf,
    /// The crash-loop guard (`guard.rs`) applies.
    pub guard: bool,
}

impl Settings {
    pub fn from_opts(o: &cli::ReplaceOpts) -> Self {
        Settings {
            dry_run: o.dry_run,
            json: o.json,
            modules_root: o.modules_root.clone(),
            host_modules_root: o
                .host_modules_root
                .clone()
                .unwrap_or_else(|| PathBuf::from(HOST_MODULES)),
            guard: true,
        }
    }

    /// `pull`'s live swap (`after_pull = "live"`): a node that crashes on
    /// it reboots into the boot-time swap, which the guard covers.
    pub fn live() -> Self {
        Settings {
            host_modules_root: PathBuf::from(HOST_MODULES),
            ..Settings::default()
        }
    }
}

const HOST_MODULES: &str = "/lib/modules";

pub fn run(run: &RunContext, settings: &Settings) -> Result<ExitCode> {
    let kver = &run.kernel;
    let host = Tree::open_if_exists(&settings.host_modules_root.join(kver))?;
    let node = NodeOptions::read(Path::new("/"));
    let ctx = Ctx {
        store: &run.store,
        config_dir: &run.config_dir,
        guard: settings.guard,
        modules_root: settings.modules_root.as_deref(),
        kver,
        host: host.as_ref(),
        node: &node,
    };
    let mut real = kernel::Real::new();
    if settings.dry_run {
        return report::dry_run(run, &ctx, settings.json, &real);
    }

    let lock = run.store.lock()?;
    let mut ok = true;
    if run.configs.is_empty() {
        log::info!("no configs in {}: nothing to do", run.config_dir.display());
    }
    for (name, cfg) in &run.configs {
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
    modules_root: Option<&Path>,
    kver: &str,
    name: &str,
    cfg: &NodeConfig,
) -> Option<(PathBuf, Option<String>, Option<String>)> {
    match modules_root {
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
    config_dir: &'a Path,
    /// Record attempts and honour quarantines (the boot-time swap; not
    /// `pull`'s live swap, which a later boot's attempt covers).
    guard: bool,
    /// `--modules-root`, standing in for the store's trees.
    modules_root: Option<&'a Path>,
    kver: &'a str,
    host: Option<&'a Tree>,
    node: &'a NodeOptions,
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
        modules_root,
        kver,
        host,
        node,
        ..
    } = *ctx;
    let mut report = ConfigReport {
        name: name.to_string(),
        status: PlanStatus::Error,
        reference: None,
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
            report.status = PlanStatus::NoMapping;
            return report;
        }
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.reference = Some(resolved.reference.clone());
    let Some((dir, digest, firmware_path)) = image_tree(store, modules_root, kver, name, cfg)
    else {
        report.status = PlanStatus::WaitingForPull;
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
            node,
        },
        kernel,
        cache,
    );
    match result {
        Ok(p) => {
            report.status = if p.up_to_date {
                PlanStatus::UpToDate
            } else {
                PlanStatus::Planned
            };
            report.plan = Some(p);
        }
        Err(e) => report.error = Some(format!("{e:#}")),
    }
    report
}

/// Replace one config's modules; false when it failed (after rollback).
fn replace_config(
    ctx: &Ctx<'_>,
    lock: &StoreLock,
    name: &str,
    cfg: &NodeConfig,
    kernel: &mut dyn Kernel,
) -> Result<bool> {
    let (store, kver) = (ctx.store, ctx.kver);
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
        boot_id: kernel.boot_id().unwrap_or_default(),
        started,
        ..ReplaceState::default()
    };
    let plan_ms = t0.elapsed().as_millis();
    let resolved_ref = report.reference.clone().unwrap_or_default();
    // The hardware gate, before the crash-loop guard: a node without the
    // device loads nothing, so it has no attempt to record.
    let no_device = match (&report.status, &report.tree) {
        (PlanStatus::Planned, Some(tree)) => devices::module_aliases(cfg, tree)
            .ok()
            .map(|aliases| devices::gate(&aliases, &kernel.modaliases()))
            .filter(|g| !g.allows(cfg.replace.require_device))
            .map(|g| g.refusal(cfg.replace.require_device)),
        _ => None,
    };
    let ok = match (report.status, report.plan) {
        (PlanStatus::Planned, _) if no_device.is_some() => {
            st.result = ReplaceResult::NoDevice;
            st.message = format!("{name}: {}", no_device.unwrap_or_default());
            notify::status(&st.message);
            true
        }
        (PlanStatus::NoMapping, _) => {
            log::info!("{name}: no kernel mapping matches {kver}: nothing to do");
            // Not an outcome worth a state file: nothing was or will be done.
            return Ok(true);
        }
        (PlanStatus::WaitingForPull, _) => {
            let msg = format!("{name}: no verified tree for {kver} in the store yet: waiting for pull (the in-tree driver stays)");
            notify::status(&msg);
            st.result = ReplaceResult::WaitingForPull;
            st.message = msg;
            true
        }
        (PlanStatus::UpToDate, _) => {
            let msg = format!(
                "{name}: {} already loaded with the image's srcversion: nothing to do",
                cfg.modules.join(", ")
            );
            notify::status(&msg);
            st.result = ReplaceResult::AlreadyLoaded;
            st.message = msg;
            true
        }
        (PlanStatus::Planned, Some(p)) => {
            let key = guard::Key {
                kernel: kver.to_string(),
                digest: st.digest.clone().unwrap_or_default(),
                config: guard::config_hash(ctx.config_dir, name),
            };
            let max = cfg.replace.max_unconfirmed_boots;
            let verdict = if ctx.guard {
                guard::check(store, name, &key, &st.boot_id, max)
                    .and_then(|q| guard::begin_unless(q, lock, store, name, &key, &st.boot_id))
            } else {
                Ok(None)
            };
            match verdict {
                Err(e) => {
                    // No record, no protection: a module that panics would
                    // take every boot down. Fail closed.
                    st.result = ReplaceResult::Failed;
                    st.message = format!("{name}: crash-loop guard: {e:#}; nothing was changed, the in-tree driver stays");
                    notify::status(&st.message);
                    false
                }
                Ok(Some(q)) => {
                    guard::quarantine(lock, store, name, &key)?;
                    st.result = ReplaceResult::Quarantined;
                    st.message = format!(
                        "{name}: quarantined {} for kernel {kver}: {} boot{} in a row loaded it and never reached the health point ({}); not loading it, the in-tree driver stays. A new image digest or a changed config is tried again; `kmm-day1-agent unquarantine --config {name}` retries this one",
                        key.digest,
                        q.boots.len(),
                        if q.boots.len() == 1 { "" } else { "s" },
                        q.boots_line()
                    );
                    notify::status(&st.message);
                    // The boot goes on, on the in-tree driver: not a failure
                    // of this unit (status reports it as one).
                    true
                }
                Ok(None) => {
                    let ok = swap(&p, ctx, kernel, &mut st, name, plan_ms, t0);
                    if ctx.guard {
                        guard::finish(lock, store, name, &key, &st.boot_id, ok)?;
                    }
                    ok
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
        ReplaceResult::AlreadyLoaded | ReplaceResult::WaitingForPull | ReplaceResult::NoDevice => {
            (log::Priority::Info, log::id::REPLACE_NOOP)
        }
        ReplaceResult::RolledBack | ReplaceResult::Failed => {
            (log::Priority::Error, log::id::REPLACE_FAILED)
        }
        ReplaceResult::Quarantined => (log::Priority::Error, log::id::REPLACE_QUARANTINED),
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

/// Carry out a plan and record it in `st`; false when it failed.
fn swap(
    p: &Plan,
    ctx: &Ctx<'_>,
    kernel: &mut dyn Kernel,
    st: &mut ReplaceState,
    name: &str,
    plan_ms: u128,
    t0: Instant,
) -> bool {
    let outcome = execute(p, ctx.host, ctx.node, kernel);
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
                outcome
                    .loaded
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !p.not_restored.is_empty() {
                st.message.push_str(&format!(
                    "; not loaded again: {} (held the replaced module; the image has no build of it, and the in-tree one was built against the in-tree module)",
                    p.not_restored.join(", ")
                ));
            }
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

/// How often `execute` removes a module that something else loaded again
/// after this run removed it, before it gives up and rolls back.
const RELOAD_RACES: u32 = 3;

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
pub fn execute(
    plan: &Plan,
    host: Option<&Tree>,
    node: &NodeOptions,
    kernel: &mut dyn Kernel,
) -> Outcome {
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
            let mut raced = 0;
            loop {
                match kernel.load(&step.name, &step.path, &step.params) {
                    // Loaded again since this run removed it: a udev worker
                    // or a modprobe running beside the unit. Remove it again,
                    // a bounded number of times.
                    Err(KernelError::Errno(libc::EEXIST))
                        if raced < RELOAD_RACES && out.removed.contains(&step.name) =>
                    {
                        raced += 1;
                        log::warning!("`{}` was loaded again after its removal (udev or modprobe beside this unit): removing it again", step.name);
                        kernel
                            .unload(&step.name)
                            .map_err(|e| anyhow::anyhow!("{}", unload_error(&step.name, &e)))?;
                    }
                    r => {
                        r.map_err(|e| anyhow::anyhow!("{}", load_error(step, &e, &*kernel)))?;
                        break;
                    }
                }
            }
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
    let reloaded = reload_in_tree(&out.removed, host, node, kernel, &mut problems);
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
/// from the host's tree, with the host's dependencies, and with the options
/// modprobe would give them: the node is as before only then.
fn reload_in_tree(
    removed: &[String],
    host: Option<&Tree>,
    node: &NodeOptions,
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
            match kernel.load(&name, &path, &node.host(&name)) {
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

mod report;
#[cfg(test)]
mod tests;

pub use report::{ConfigReport, PlanStatus};
