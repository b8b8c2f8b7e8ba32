//! The crash-loop guard (docs/replace.md#crash-loop-guard). A module that
//! panics or hangs the kernel never lets `replace` report anything, so the
//! evidence is written before the load: `replace` records the attempt in
//! `boots.json` (fsynced) and a later point of the same boot confirms it.
//! A boot that starts and finds `max_unconfirmed_boots` unconfirmed boots
//! of the same tree, kernel and config quarantines that tree instead of
//! loading it, and the node boots on its in-tree driver.
//!
//! Only boots that loaded something count: a run that found the modules
//! already loaded, or no tree, records nothing, and a load that failed and
//! rolled back removes its record (the kernel survived it; the rollback
//! has its own state in replace.json).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use kmm_day1_config::{ConfirmAt, NodeConfig};

use crate::context::RunContext;
use crate::kernel::{Kernel, Real};
use crate::log;
use crate::store::state::{self, Attempt, BootsState, ReplaceResult, ReplaceState, Stage};
use crate::store::{Store, StoreLock};
use crate::units;

/// What the attempts are of: another kernel, digest or config is a new
/// record, so a fixed image or a changed config is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kernel: String,
    pub digest: String,
    /// [`config_hash`] of the config file.
    pub config: String,
}

impl Key {
    fn matches(&self, s: &BootsState) -> bool {
        s.kernel == self.kernel && s.digest == self.digest && s.config == self.config
    }
}

/// SHA-256 of `<config_dir>/<name>.toml` as it is now (empty when it cannot
/// be read: then every run is a changed config, which only ever retries).
pub fn config_hash(config_dir: &Path, name: &str) -> String {
    std::fs::read(config_dir.join(format!("{name}.toml")))
        .map(|b| crate::oci::sha256_digest(&b))
        .unwrap_or_default()
}

/// The tree is quarantined for this kernel: the boots that did not survive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub boots: Vec<Attempt>,
    /// When it was first quarantined; `None` when this run decides it.
    pub since: Option<String>,
}

impl Quarantine {
    /// `boot 1a2b3c4d at 2026-…Z: did not finish loading; …` for the
    /// journal line and `status`.
    pub fn boots_line(&self) -> String {
        self.boots
            .iter()
            .map(|a| {
                format!(
                    "boot {} at {}: {}",
                    short(&a.boot_id),
                    a.started,
                    match a.stage {
                        Stage::Loading => "did not finish loading",
                        Stage::Loaded => "loaded, never confirmed",
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn short(boot_id: &str) -> &str {
    boot_id.get(..8).unwrap_or(boot_id)
}

/// The record for `key`, or `None` when there is none or it is of another
/// tree, kernel or config. An unreadable record is an error: the guard
/// cannot decide, and the caller loads nothing (fails closed).
pub fn record(store: &Store, name: &str, key: &Key) -> Result<Option<BootsState>> {
    Ok(state::load::<BootsState>(&store.boots_state_path(name))?.filter(|s| key.matches(s)))
}

/// Whether `replace` may load the tree of `key` in boot `boot_id`.
pub fn check(
    store: &Store,
    name: &str,
    key: &Key,
    boot_id: &str,
    max_unconfirmed: u32,
) -> Result<Option<Quarantine>> {
    Ok(record(store, name, key)?.and_then(|s| quarantined(&s, boot_id, max_unconfirmed)))
}

/// The quarantine `s` amounts to in boot `boot_id`, if any. Attempts of
/// this boot do not count: a second `replace` in one boot is not a crash.
pub fn quarantined(s: &BootsState, boot_id: &str, max_unconfirmed: u32) -> Option<Quarantine> {
    let boots: Vec<Attempt> = s
        .unconfirmed
        .iter()
        .filter(|a| a.boot_id != boot_id)
        .cloned()
        .collect();
    (s.quarantined_at.is_some() || boots.len() >= max_unconfirmed as usize).then(|| Quarantine {
        boots,
        since: s.quarantined_at.clone(),
    })
}

/// `begin` unless `check` found a quarantine: what `replace` does before
/// it loads anything.
pub fn begin_unless(
    q: Option<Quarantine>,
    lock: &StoreLock,
    store: &Store,
    name: &str,
    key: &Key,
    boot_id: &str,
) -> Result<Option<Quarantine>> {
    if q.is_none() {
        begin(lock, store, name, key, boot_id)?;
    }
    Ok(q)
}

/// Mark the record quarantined (once: `since` keeps the first time).
pub fn quarantine(lock: &StoreLock, store: &Store, name: &str, key: &Key) -> Result<()> {
    let mut s = record(store, name, key)?.unwrap_or_else(|| fresh(key));
    if s.quarantined_at.is_none() {
        s.quarantined_at = Some(units::now_rfc3339());
        state::save(lock, &store.boots_state_path(name), &s)?;
    }
    Ok(())
}

fn fresh(key: &Key) -> BootsState {
    BootsState {
        kernel: key.kernel.clone(),
        digest: key.digest.clone(),
        config: key.config.clone(),
        ..BootsState::default()
    }
}

/// Before the first load of a swap: this boot is loading the tree. Written
/// and fsynced (`state::save`) before it returns, so a panic in the very
/// next syscall still leaves the record.
pub fn begin(lock: &StoreLock, store: &Store, name: &str, key: &Key, boot_id: &str) -> Result<()> {
    let mut s = record(store, name, key)?.unwrap_or_else(|| fresh(key));
    s.unconfirmed.retain(|a| a.boot_id != boot_id);
    s.unconfirmed.push(Attempt {
        boot_id: boot_id.to_string(),
        started: units::now_rfc3339(),
        stage: Stage::Loading,
    });
    state::save(lock, &store.boots_state_path(name), &s)
}

/// After the swap: loaded (wait for the health point) or not (the load
/// failed and rolled back, the kernel survived: no crash to count).
pub fn finish(
    lock: &StoreLock,
    store: &Store,
    name: &str,
    key: &Key,
    boot_id: &str,
    loaded: bool,
) -> Result<()> {
    let Some(mut s) = record(store, name, key)? else {
        return Ok(());
    };
    if loaded {
        for a in s.unconfirmed.iter_mut().filter(|a| a.boot_id == boot_id) {
            a.stage = Stage::Loaded;
        }
    } else {
        s.unconfirmed.retain(|a| a.boot_id != boot_id);
    }
    state::save(lock, &store.boots_state_path(name), &s)
}

/// What [`confirm`] found for one config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// This boot loaded the tree and its modules still run: the count is
    /// reset.
    Yes { modules: Vec<String> },
    /// This boot loaded nothing (nothing to vouch for; the count stays).
    NothingLoaded,
    /// This boot loaded the tree but `module` no longer runs it.
    Gone { module: String },
}

impl Confirmed {
    pub fn line(&self, name: &str) -> String {
        match self {
            Confirmed::Yes { modules } => format!(
                "{name}: this boot is confirmed healthy: {} still loaded; the crash-loop count is reset",
                modules.join(", ")
            ),
            Confirmed::NothingLoaded => {
                format!("{name}: nothing to confirm: this boot loaded no out-of-tree modules")
            }
            Confirmed::Gone { module } => format!(
                "{name}: not confirmed: `{module}` no longer runs the stored tree's build; this boot counts as unconfirmed"
            ),
        }
    }
}

/// The health point: if this boot's `replace` loaded the tree and its
/// modules are still loaded with the builds it loaded, clear the record's
/// unconfirmed boots (and any quarantine of that tree).
pub fn confirm(
    lock: &StoreLock,
    store: &Store,
    name: &str,
    modules: &[String],
    kernel: &dyn Kernel,
) -> Result<Confirmed> {
    let boot_id = kernel.boot_id().unwrap_or_default();
    let replace: Option<ReplaceState> = state::load(&store.replace_state_path(name))?;
    let Some(r) = replace.filter(|r| r.boot_id == boot_id && r.result == ReplaceResult::Loaded)
    else {
        return Ok(Confirmed::NothingLoaded);
    };
    for m in modules {
        let canon = kmm_day1_config::module_name_canonical(m);
        let want = r
            .loaded
            .iter()
            .find(|l| kmm_day1_config::module_name_canonical(&l.name) == canon);
        let running = kernel.loaded()?.iter().any(|l| l.name == canon);
        let same_build = want
            .is_some_and(|w| w.srcversion.is_none() || kernel.srcversion(&canon) == w.srcversion);
        if !running || !same_build {
            return Ok(Confirmed::Gone { module: m.clone() });
        }
    }
    let path = store.boots_state_path(name);
    if let Some(mut s) = state::load::<BootsState>(&path)? {
        s.unconfirmed.clear();
        s.quarantined_at = None;
        s.confirmed_boot = Some(boot_id);
        s.confirmed_at = Some(units::now_rfc3339());
        state::save(lock, &path, &s)?;
    }
    Ok(Confirmed::Yes {
        modules: modules.to_vec(),
    })
}

/// `unquarantine`: forget the record, so the next `replace` loads the tree
/// again with a fresh count. Whether there was a quarantine to lift.
pub fn forget(_lock: &StoreLock, store: &Store, name: &str) -> Result<bool> {
    let path = store.boots_state_path(name);
    let had = state::load::<BootsState>(&path)?.is_some_and(|s| s.quarantined_at.is_some());
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(had),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!("removing {}", path.display()))),
    }
}

/// The configs `--config NAME` selects (every one without it).
fn selected<'a>(run: &'a RunContext, only: Option<&str>) -> Result<Vec<&'a (String, NodeConfig)>> {
    let all: Vec<_> = run.configs.iter().collect();
    let Some(only) = only else {
        return Ok(all);
    };
    let picked: Vec<_> = all.into_iter().filter(|(n, _)| n == only).collect();
    if picked.is_empty() {
        bail!(
            "no config `{only}` in {}: the names are the files' stems ({})",
            run.config_dir.display(),
            run.configs
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(picked)
}

/// One confirmation in the journal (nothing for a boot that loaded
/// nothing unless `quiet` is false: the command says so, `pull` does not).
fn log_confirmed(name: &str, c: &Confirmed, quiet: bool) {
    let line = c.line(name);
    match c {
        Confirmed::Yes { .. } => log::send(
            log::Priority::Notice,
            &[
                ("MESSAGE_ID", log::id::CONFIRMED),
                ("KMM_DAY1_CONFIG", name),
            ],
            format_args!("{line}"),
        ),
        Confirmed::Gone { .. } => log::send(
            log::Priority::Warning,
            &[("KMM_DAY1_CONFIG", name)],
            format_args!("{line}"),
        ),
        Confirmed::NothingLoaded if !quiet => log::info!("{line}"),
        Confirmed::NothingLoaded => {}
    }
}

/// `kmm-day1-agent confirm`.
pub fn run_confirm(run: &RunContext, only: Option<&str>) -> Result<ExitCode> {
    let configs = selected(run, only)?;
    let lock = run.store.lock()?;
    let kernel = Real::new();
    let mut ok = true;
    for (name, cfg) in configs {
        let c = confirm(&lock, &run.store, name, &cfg.modules, &kernel)?;
        ok &= !matches!(c, Confirmed::Gone { .. });
        log_confirmed(name, &c, false);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `pull`'s health point, under its lock: every config that confirms at
/// pull. A failure is logged and does not stop the pull.
pub fn confirm_at_pull(lock: &StoreLock, run: &RunContext) {
    let kernel = Real::new();
    for (name, cfg) in &run.configs {
        if cfg.replace.confirm != ConfirmAt::Pull {
            continue;
        }
        match confirm(lock, &run.store, name, &cfg.modules, &kernel) {
            Ok(c) => log_confirmed(name, &c, true),
            Err(e) => {
                log::warning!("{name}: cannot confirm this boot for the crash-loop guard: {e:#}")
            }
        }
    }
}

/// `kmm-day1-agent unquarantine`.
pub fn run_unquarantine(run: &RunContext, only: Option<&str>) -> Result<ExitCode> {
    let configs = selected(run, only)?;
    let lock = run.store.lock()?;
    for (name, _) in configs {
        if forget(&lock, &run.store, name)? {
            log::notice!("{name}: quarantine lifted: the next swap (next boot, or `systemctl restart kmm-day1-replace`) loads the tree again");
        } else {
            log::info!("{name}: not quarantined; its crash-loop count is reset");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
