//! `pull` (see `cli::PULL_HELP`): for each config, resolve the image for
//! the running kernel, download its layers (verified), extract the module
//! tree and firmware, publish atomically, then act on `after_pull`.
//! docs/pull.md describes each step and its failure modes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kmm_day1_config::{AfterPull, NodeConfig};

use crate::blobs;
use crate::context::RunContext;
use crate::extract::{defect, Caps, Extractor, Filter, Summary};
use crate::oci::layout::OciLayout;
use crate::oci::{self, ImageSource, Platform, ResolvedImage};
use crate::policy::{self, NodePolicy};
use crate::registry::{Registry, RegistryOptions};
use crate::store::publish;
use crate::store::state::{self, PullResult, PullState, TreeMeta};
use crate::store::{self, Store, StoreLock};
use crate::units::{self, Tenths};
use crate::{cli, log, modules, notify};

/// The pull unit has `TimeoutSec=900`; stop retrying a minute before.
const BUDGET: Duration = Duration::from_secs(840);

/// [`BUDGET`], or `KMM_DAY1_PULL_BUDGET_SECS` when set: a unit drop-in that
/// shortens `TimeoutSec=` sets it too, and the VM test of a registry down at
/// boot should not wait 14 minutes. Not in `--help`.
fn budget() -> Duration {
    std::env::var("KMM_DAY1_PULL_BUDGET_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .map_or(BUDGET, Duration::from_secs)
}

/// What one config's pull came to.
#[derive(Debug)]
struct Outcome {
    result: PullResult,
    /// A new tree became `current` (so `after_pull` applies).
    fresh: bool,
    message: String,
    /// The failure is the image's own (`extract::ImageDefect`).
    defect: bool,
    image: Option<String>,
    digest: Option<String>,
    source: Option<String>,
    downloaded: u64,
    extracted: u64,
}

impl Outcome {
    fn simple(result: PullResult, message: String) -> Self {
        Outcome {
            result,
            fresh: false,
            message,
            defect: false,
            image: None,
            digest: None,
            source: None,
            downloaded: 0,
            extracted: 0,
        }
    }
}

impl Outcome {
    /// pull.json after this run: everything from the outcome, the reboot
    /// counters from the previous file (only this kernel's: counters of
    /// kernels that are gone would grow the file forever).
    fn state(&self, prev: PullState, kver: &str, started: String, took: Duration) -> PullState {
        let mut reboots = prev.reboots;
        reboots.retain(|k, _| k == kver);
        PullState {
            kernel: kver.to_string(),
            result: self.result,
            message: self.message.clone(),
            image: self.image.clone(),
            digest: self.digest.clone(),
            source: self.source.clone(),
            downloaded_bytes: self.downloaded,
            extracted_bytes: self.extracted,
            started,
            finished: units::now_rfc3339(),
            duration_ms: took.as_millis() as u64,
            reboots,
            reboot_guard: false,
            image_defect: self.defect,
        }
    }
}

/// How `pull` runs, from its command line.
#[derive(Debug, Default)]
pub struct Settings {
    /// Never reboot, whatever `after_pull` says.
    pub no_reboot: bool,
    /// Take the image from this OCI layout instead of the registry.
    pub oci_layout: Option<PathBuf>,
    /// Pull for the kernels of the staged OS deployment instead.
    pub staged: bool,
}

impl Settings {
    pub fn from_opts(o: &cli::PullOpts) -> Self {
        Settings {
            no_reboot: o.no_reboot,
            oci_layout: o.oci_layout.clone(),
            staged: o.staged,
        }
    }
}

/// `pull --staged`: for each kernel of the deployment rpm-ostree staged for
/// the next boot, and each config, pull what the store lacks, so that boot
/// swaps with no reboot of ours (docs/upgrades.md). Runs in the shutdown
/// of the MCO's reboot (kmm-day1-pull-staged.service's `ExecStop=`),
/// bounded by the largest `pull.shutdown_timeout_secs`; never reboots or
/// swaps live (the kernel is not running yet).
pub fn run_staged(run: &RunContext, opts: &Settings) -> Result<ExitCode> {
    let t0 = Instant::now();
    let root = crate::node::root();
    let pending = crate::node::pending(&root, &run.kernel)?;
    if pending.is_empty() || run.configs.is_empty() {
        log::info!(
            "no staged deployment with a kernel other than {}: nothing to pull before the next boot",
            run.kernel
        );
        return Ok(ExitCode::SUCCESS);
    }
    let lock = run.store.lock()?;
    publish::clean_stale(&lock, &run.store)?;
    let secs = run
        .configs
        .iter()
        .map(|(_, c)| c.pull.shutdown_timeout_secs)
        .max()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(secs.into());
    let mut lines = Vec::new();
    let mut failed = false;
    for p in &pending {
        for (name, cfg) in &run.configs {
            let line = if run.store.current_tree(name, &p.kernel).is_some() {
                format!("{name}: already in the store")
            } else {
                let o = pull_config(&lock, run, (name, cfg), &p.kernel, opts, deadline)?;
                failed |= matches!(o.result, PullResult::Failed | PullResult::Refused);
                match o.result {
                    PullResult::Failed | PullResult::Refused => {
                        format!(
                            "{name}: {} (the error is on the line above)",
                            o.result.as_str()
                        )
                    }
                    _ => format!("{name}: {}", o.message),
                }
            };
            lines.push(format!("kernel {} of {}: {line}", p.kernel, p.deployment));
        }
    }
    let fields = [
        ("MESSAGE_ID", log::id::PULL_SUMMARY),
        ("KMM_DAY1_KERNEL", pending[0].kernel.as_str()),
        ("KMM_DAY1_DEPLOYMENT", pending[0].deployment.as_str()),
        ("KMM_DAY1_RESULT", if failed { "failed" } else { "ok" }),
    ];
    let (p, after) = if failed {
        (
            log::Priority::Error,
            "that kernel boots on the in-tree driver and pulls after boot",
        )
    } else {
        (log::Priority::Notice, "the next boot swaps with no reboot")
    };
    log::send(
        p,
        &fields,
        format_args!(
            "staged pull in {}s (budget {secs}s): {}; {after}",
            Tenths::of(t0.elapsed()),
            lines.join("; ")
        ),
    );
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn run(run: &RunContext, opts: &Settings) -> Result<ExitCode> {
    let t0 = Instant::now();
    let (kver, configs, store) = (&run.kernel, &run.configs, &run.store);
    if configs.is_empty() {
        let msg = format!(
            "no configs in {}: nothing to pull",
            run.config_dir.display()
        );
        log::info!("{msg}");
        notify::ready(&msg);
        return Ok(ExitCode::SUCCESS);
    }
    notify::status("waiting for the store lock");
    let lock = store.lock()?;
    publish::clean_stale(&lock, store)?;
    // The default health point of the crash-loop guard: this boot reached
    // the network (docs/replace.md#crash-loop-guard).
    crate::guard::confirm_at_pull(&lock, run);
    let deadline = Instant::now() + budget();

    let mut failed = Vec::new();
    let mut reboot_for = Vec::new();
    let mut live_for = Vec::new();
    let mut summaries = Vec::new();
    // Config, image and digest of the summary line, when there is one config.
    let mut last_fields: [String; 3] = Default::default();
    let node = crate::kernel::Real::new();
    // Rebooting a node that runs workloads is the MCO's job (drained,
    // within maxUnavailable): after joining, the swap waits for its reboot.
    let joined = crate::node::joined(&crate::node::root());
    let mut waiting = Vec::new();
    for (name, cfg) in configs {
        let outcome = pull_config(&lock, run, (name, cfg), kver, opts, deadline)?;
        // A tree this node's hardware gate would not swap in asks for no
        // reboot and no live swap (docs/config.md, require_device).
        let no_device = if outcome.fresh {
            crate::devices::refusal_for_stored(cfg, store, name, &run.kernel, &node)
        } else {
            None
        };
        // A failure's error is on its own line just above: the summary
        // names it and does not repeat it.
        summaries.push(match (&outcome.result, &no_device) {
            (PullResult::Failed | PullResult::Refused, _) => format!(
                "{name}: {} (the error is on the line above)",
                outcome.result.as_str()
            ),
            (_, Some(why)) => format!("{name}: {}; no reboot: {why}", outcome.message),
            _ => format!("{name}: {}", outcome.message),
        });
        last_fields = [
            name.clone(),
            outcome.image.clone().unwrap_or_default(),
            outcome.digest.clone().unwrap_or_default(),
        ];
        match outcome.result {
            PullResult::Failed | PullResult::Refused => failed.push(name.clone()),
            _ if !outcome.fresh || no_device.is_some() => {}
            _ if opts.no_reboot => {}
            _ => match cfg.pull.after_pull {
                AfterPull::Reboot if joined && cfg.pull.waits_for_mco_when_joined() => {
                    waiting.push(name.clone())
                }
                AfterPull::Reboot => {
                    reboot_for.push((name.clone(), cfg.pull.max_reboots_per_kernel))
                }
                AfterPull::Live => live_for.push(name.clone()),
                AfterPull::None => {}
            },
        }
    }
    if failed.is_empty() {
        // Every needed blob is in a tree now; nothing to resume.
        publish::clear_blobs(&lock, store)?;
    }
    if !waiting.is_empty() {
        summaries.push(format!(
            "no reboot for {}: the node has joined the cluster (/{} exists), so the swap waits for the next reboot the MCO orders (or set pull.after_pull = \"live\")",
            waiting.join(", "),
            crate::node::KUBELET_CLIENT_CERT
        ));
    }

    // Counted under the lock, requested once everything else is done.
    let reboot = if reboot_for.is_empty() {
        false
    } else {
        match count_reboots(store, &lock, kver, &reboot_for) {
            Ok(()) => true,
            Err(e) => {
                log::send(
                    log::Priority::Error,
                    &[
                        ("MESSAGE_ID", log::id::REBOOT_GUARD),
                        ("KMM_DAY1_KERNEL", kver),
                    ],
                    format_args!("{e:#}"),
                );
                summaries.push("no reboot: the reboot guard refused it (the line above)".into());
                failed.extend(reboot_for.iter().map(|(n, _)| n.clone()));
                false
            }
        }
    };
    // `replace` takes the store lock itself (flock: a second open file in
    // this process would wait on ours forever).
    drop(lock);
    if !live_for.is_empty() {
        // The replace phase covers every config and is idempotent: configs
        // already loaded are left alone.
        notify::status(&format!(
            "swapping modules live for {}",
            live_for.join(", ")
        ));
        match crate::replace::run(run, &crate::replace::Settings::live()) {
            Ok(code) if code == ExitCode::SUCCESS => {
                summaries.push(format!("swapped live: {}", live_for.join(", ")));
            }
            Ok(_) => {
                summaries.push("the live swap failed (see the replace lines above)".into());
                failed.extend(live_for.iter().cloned());
            }
            Err(e) => {
                log::error!("live swap after pull: {e:#}");
                summaries.push("the live swap failed".into());
                failed.extend(live_for.iter().cloned());
            }
        }
    }

    let summary = format!(
        "pull for kernel {kver} in {}s: {}",
        Tenths::of(t0.elapsed()),
        summaries.join("; ")
    );
    let one = configs.len() == 1;
    let mut fields: Vec<(&str, &str)> = vec![
        ("KMM_DAY1_KERNEL", kver),
        (
            "KMM_DAY1_RESULT",
            if failed.is_empty() { "ok" } else { "failed" },
        ),
    ];
    if one {
        fields.push(("KMM_DAY1_CONFIG", &last_fields[0]));
        fields.push(("KMM_DAY1_IMAGE", &last_fields[1]));
        fields.push(("KMM_DAY1_DIGEST", &last_fields[2]));
    }
    if reboot {
        request_reboot()?;
        fields.push(("MESSAGE_ID", log::id::REBOOT));
        log::send(
            log::Priority::Notice,
            &fields,
            format_args!("{summary}; rebooting to load the new modules early in boot"),
        );
        notify::ready(&format!("{summary}; rebooting"));
    } else {
        fields.push(("MESSAGE_ID", log::id::PULL_SUMMARY));
        let p = if failed.is_empty() {
            log::Priority::Notice
        } else {
            log::Priority::Error
        };
        log::send(p, &fields, format_args!("{summary}"));
        notify::ready(&summary);
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// One config's pull for kernel `kver`: the work, its journal line
/// (failures and new trees; the quiet outcomes are in the summary line) and
/// its state file: pull.json for the running kernel, `<kver>/pull.json`
/// for a staged one.
fn pull_config(
    lock: &StoreLock,
    run: &RunContext,
    (name, cfg): (&str, &NodeConfig),
    kver: &str,
    opts: &Settings,
    deadline: Instant,
) -> Result<Outcome> {
    let store = &run.store;
    let started = units::now_rfc3339();
    let t_config = Instant::now();
    let outcome = match pull_one(store, lock, name, cfg, kver, &run.kernel, opts, deadline) {
        Ok(o) => o,
        Err(e) => Outcome {
            // Journal lines and status name the image even on failure.
            image: cfg.resolve(name, kver).ok().flatten().map(|r| r.reference),
            defect: crate::extract::is_defect(&e),
            ..Outcome::simple(
                if e.downcast_ref::<policy::PolicyError>().is_some() {
                    PullResult::Refused
                } else {
                    PullResult::Failed
                },
                format!("{e:#}"),
            )
        },
    };
    // Up to date and no-mapping stay quiet: the summary line says it.
    let failed = matches!(outcome.result, PullResult::Failed | PullResult::Refused);
    let priority = match outcome.result {
        _ if failed => Some(log::Priority::Error),
        PullResult::Published => Some(log::Priority::Info),
        _ => None,
    };
    if let Some(p) = priority {
        let id = if failed {
            log::id::PULL_FAILED
        } else {
            log::id::PULL_PUBLISHED
        };
        log::send(
            p,
            &[
                ("MESSAGE_ID", id),
                ("KMM_DAY1_CONFIG", name),
                ("KMM_DAY1_IMAGE", outcome.image.as_deref().unwrap_or("")),
                ("KMM_DAY1_KERNEL", kver),
                ("KMM_DAY1_RESULT", outcome.result.as_str()),
                ("KMM_DAY1_DIGEST", outcome.digest.as_deref().unwrap_or("")),
            ],
            format_args!(
                "{name}: {}{}",
                match outcome.result {
                    PullResult::Failed => "pull failed: ",
                    PullResult::Refused => "pull refused: ",
                    _ => "",
                },
                outcome.message
            ),
        );
    }
    let path = if kver == run.kernel {
        store.pull_state_path(name)
    } else {
        store.staged_pull_state_path(name, kver)
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let prev: PullState = state::load(&path).ok().flatten().unwrap_or_default();
    let st = outcome.state(prev, kver, started, t_config.elapsed());
    state::save(lock, &path, &st)?;
    Ok(outcome)
}

/// Count a reboot against each config's guard (`max_reboots_per_kernel`),
/// saved before the reboot is requested so a crash cannot skip it. Over the
/// limit: nothing is counted, the config's pull.json says why, and no reboot.
fn count_reboots(
    store: &Store,
    lock: &StoreLock,
    kver: &str,
    configs: &[(String, u32)],
) -> Result<()> {
    let mut states = Vec::new();
    for (name, max) in configs {
        let path = store.pull_state_path(name);
        let mut st: PullState = state::load(&path)?.unwrap_or_default();
        let n = st.reboots.get(kver).copied().unwrap_or(0);
        if n >= *max {
            let msg = format!(
                "{name}: already rebooted {n} times for kernel {kver} (pull.max_reboots_per_kernel = {max}); \
                 not rebooting again: see `kmm-day1-agent status` and the replace unit's journal"
            );
            st.result = PullResult::Failed;
            st.message = msg.clone();
            st.reboot_guard = true;
            state::save(lock, &path, &st)?;
            bail!(msg);
        }
        st.reboots.insert(kver.to_string(), n + 1);
        states.push((path, st));
    }
    for (path, st) in states {
        state::save(lock, &path, &st)?;
    }
    Ok(())
}

/// Ask systemd to reboot: spawned, not exec'd, so our exit status and
/// journal lines still land.
fn request_reboot() -> Result<()> {
    let status = std::process::Command::new("systemctl")
        .arg("reboot")
        .status()
        .context("running `systemctl reboot`")?;
    if !status.success() {
        bail!("`systemctl reboot` failed ({status})");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn pull_one(
    store: &Store,
    lock: &StoreLock,
    name: &str,
    cfg: &NodeConfig,
    kver: &str,
    running: &str,
    opts: &Settings,
    deadline: Instant,
) -> Result<Outcome> {
    let Some(resolved) = cfg.resolve(name, kver)? else {
        let msg = format!("no kernel mapping matches kernel {kver}: nothing to pull");
        return Ok(Outcome::simple(PullResult::NoMapping, msg));
    };
    // Read before any traffic: a policy that cannot be used stops the
    // pull here (docs/security.md#image-signatures). A local layout is an
    // admin's explicit choice on the command line, outside the policy.
    let policy = match &opts.oci_layout {
        Some(_) => None,
        None => Some(NodePolicy::load(Path::new("/"))?),
    };
    // A digest-pinned reference already in the store needs no registry: a
    // node whose registry is down still starts cleanly, unless the policy
    // wants its signatures checked.
    let offline_ok = policy
        .as_ref()
        .is_none_or(|p| p.accepts_offline(&resolved.image));
    if let (true, Some(pin), Some(meta)) = (
        offline_ok,
        &resolved.image.digest,
        store.current_meta(name, kver)?,
    ) {
        if meta.kernel == kver && (&meta.digest == pin || meta.index_digest.as_ref() == Some(pin)) {
            return Ok(Outcome {
                message: format!("{} is up to date ({})", resolved.reference, meta.digest),
                image: Some(resolved.reference.clone()),
                digest: Some(meta.digest.clone()),
                source: Some(meta.source.clone()),
                ..Outcome::simple(PullResult::UpToDate, String::new())
            });
        }
    }
    notify::status(&format!("{name}: resolving {}", resolved.reference));
    let resolving = || format!("resolving {}", resolved.reference);
    // `policy` is `None` exactly when the image comes from a layout.
    let (mut src, image, allowed): (Box<dyn ImageSource>, _, _) = match &policy {
        None => {
            let dir = dir_or_layout(opts)?;
            let mut layout = OciLayout::open(dir, Platform::host())?;
            let image = layout.resolve(&resolved.image).with_context(resolving)?;
            (Box::new(layout), image, None)
        }
        Some(policy) => {
            let mut reg = Registry::new(RegistryOptions::for_node(&resolved, cfg, deadline))?;
            let image = reg.resolve(&resolved.image).with_context(resolving)?;
            // Before any layer: the signatures of the digest the tag
            // resolved to, from the endpoint that served it.
            notify::status(&format!(
                "{name}: checking {} against the signature policy",
                image.digest
            ));
            let allowed = policy.check_pull(&resolved.image, &image, &mut reg)?;
            (Box::new(reg), image, allowed)
        }
    };
    if let Some(a) = &allowed {
        log::info!(
            "{name}: {} ({}) is allowed by {} ({}): {}",
            resolved.reference,
            image.digest,
            policy::POLICY_FILE,
            a.scope,
            a.by
        );
    }
    let hex = oci::digest_hex(&image.digest)?.to_string();
    let kdir = store.kernel_dir(name, kver);
    let mut outcome = Outcome {
        image: Some(resolved.reference.clone()),
        digest: Some(image.digest.clone()),
        source: Some(image.source.clone()),
        ..Outcome::simple(PullResult::UpToDate, String::new())
    };
    if store
        .current_meta(name, kver)?
        .is_some_and(|m| m.digest == image.digest && m.kernel == kver)
    {
        outcome.message = format!("{} is up to date ({})", resolved.reference, image.digest);
        return Ok(outcome);
    }
    if publish::complete_tree(&kdir, &hex).is_some() {
        let previous = publish::swap_current(lock, &kdir, &store::tree_name(&hex))?;
        publish::gc(lock, store, name, kver, running, previous.as_deref())?;
        outcome.result = PullResult::Published;
        outcome.fresh = true;
        outcome.message = format!(
            "{} ({}) was already in the store; made it current",
            resolved.reference, image.digest
        );
        return Ok(outcome);
    }

    let total: u64 = image.layers.iter().map(|l| l.size).sum();
    if total > cfg.limits.max_download_bytes {
        defect!(
            "{} has {total} bytes of layers, more than limits.max_download_bytes ({})",
            resolved.reference,
            cfg.limits.max_download_bytes
        );
    }
    fs::create_dir_all(&kdir).with_context(|| format!("creating {}", kdir.display()))?;
    let tmp = publish::temp_tree(&kdir, &hex);
    let t_start = Instant::now();
    let result = fetch_extract_publish(
        store,
        lock,
        name,
        cfg,
        kver,
        &image,
        src.as_mut(),
        &tmp,
        &kdir,
        &hex,
        total,
    );
    if result.is_err() {
        // Nothing half-extracted stays behind a failed pull.
        let _ = fs::remove_dir_all(&tmp);
    }
    let (meta, previous, download_secs) = result?;
    publish::gc(lock, store, name, kver, running, previous.as_deref())?;
    outcome.result = PullResult::Published;
    outcome.fresh = true;
    outcome.downloaded = total;
    outcome.extracted = meta.extracted_bytes;
    outcome.message = format!(
        "published {} ({}): {}, {} downloaded in {download_secs}s, {} extracted alongside and synced, {}s in all",
        resolved.reference,
        image.digest,
        units::count(usize::try_from(meta.files).unwrap_or(usize::MAX), "file"),
        units::size(total),
        units::size(meta.extracted_bytes),
        Tenths::of(t_start.elapsed())
    );
    Ok(outcome)
}

fn dir_or_layout(opts: &Settings) -> Result<&Path> {
    opts.oci_layout
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("internal: no OCI layout and no policy"))
}

/// Download the layers and extract them into `tmp`, then check and publish
/// the tree. Layer i is extracted on a second thread while layer i+1
/// downloads (one hashes network bytes, the other decompresses and writes
/// files): a blob reaches the extractor only once its digest has matched, so
/// no unverified byte is ever parsed, and a pull takes about the longer of
/// the two instead of their sum (bench/pull.sh).
#[allow(clippy::too_many_arguments)]
fn fetch_extract_publish(
    store: &Store,
    lock: &StoreLock,
    name: &str,
    cfg: &NodeConfig,
    kver: &str,
    image: &ResolvedImage,
    src: &mut dyn ImageSource,
    tmp: &Path,
    kdir: &Path,
    hex: &str,
    downloaded: u64,
) -> Result<(TreeMeta, Option<String>, Tenths)> {
    if tmp.exists() {
        fs::remove_dir_all(tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let filter = Filter {
        module_root: cfg.module_root.clone(),
        kernel: kver.to_string(),
        firmware_dir: cfg.firmware_dir.clone(),
    };
    let x = Extractor::new(
        tmp,
        &filter,
        Caps {
            max_entries: cfg.limits.max_entries,
            max_bytes: cfg.limits.max_extract_bytes,
            max_tar_bytes: cfg.limits.max_tar_bytes,
        },
    );
    let n = image.layers.len();
    let blobs_dir = store.blobs_dir();
    let handoff = Handoff::default();
    let (summary, download_secs) = std::thread::scope(|scope| {
        let extractor = scope.spawn(|| extract_layers(x, image, &handoff));
        let t_download = Instant::now();
        let mut fetched = Ok(());
        for (i, layer) in image.layers.iter().enumerate() {
            // An extraction error ends the pull: stop downloading.
            if extractor.is_finished() {
                break;
            }
            let label = format!("{name}: layer {}/{n}", i + 1);
            notify::status(&format!("{label} ({} MiB)", layer.size >> 20));
            match blobs::fetch(&blobs_dir, src, image, layer, &label) {
                Ok(path) => handoff.push(path),
                Err(e) => {
                    fetched = Err(e);
                    break;
                }
            }
        }
        handoff.close();
        let download_secs = Tenths::of(t_download.elapsed());
        // With panic=abort a panicking extractor has ended the process.
        let extracted = extractor.join().unwrap_or(Ok(None));
        // A failed download is the cause; the extractor then stopped short.
        fetched?;
        match extracted? {
            Some(summary) => Ok((summary, download_secs)),
            None => bail!("internal error: the layers were downloaded but not all extracted"),
        }
    })?;
    // Gone before the sync below, so their pages are never written back;
    // a later failure only costs a download.
    let digests: Vec<String> = image.layers.iter().map(|l| l.digest.clone()).collect();
    publish::drop_blobs(lock, store, &digests);
    check_tree(tmp, cfg, kver, &image.reference, &summary.kernels_seen)?;
    let meta = TreeMeta {
        digest: image.digest.clone(),
        index_digest: image.index_digest.clone(),
        image: image.reference.clone(),
        source: image.source.clone(),
        kernel: kver.to_string(),
        layers: image.layers.iter().map(|l| l.digest.clone()).collect(),
        downloaded_bytes: downloaded,
        extracted_bytes: summary.bytes,
        files: summary.files,
        firmware: tmp.join("firmware").is_dir(),
        pulled: units::now_rfc3339(),
    };
    notify::status(&format!("{name}: publishing {}", image.digest));
    let previous = publish::publish(lock, kdir, tmp, hex, &meta)?;
    Ok((meta, previous, download_secs))
}

/// Verified blobs, in layer order, from the download loop to the extraction
/// thread. A mutex and a condition variable instead of `std::sync::mpsc`:
/// the channel's code made the static agent 22 KB larger as embedded.
#[derive(Default)]
struct Handoff {
    state: std::sync::Mutex<(Vec<PathBuf>, bool)>,
    ready: std::sync::Condvar,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<PathBuf>, bool)> {
        // Poisoning needs a panic, which aborts this process (panic=abort).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, path: PathBuf) {
        self.lock().0.push(path);
        self.ready.notify_one();
    }

    /// No more blobs will come.
    fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_one();
    }

    /// Blob `i`, waiting for it; `None` once closed without it.
    fn get(&self, i: usize) -> Option<PathBuf> {
        let mut s = self.lock();
        loop {
            if let Some(p) = s.0.get(i) {
                return Some(p.clone());
            }
            if s.1 {
                return None;
            }
            s = self
                .ready
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// The extraction thread: every layer in order, as its verified blob comes;
/// `None` when the downloads stopped first.
fn extract_layers(
    mut x: Extractor,
    image: &ResolvedImage,
    verified: &Handoff,
) -> Result<Option<Summary>> {
    let n = image.layers.len();
    for (i, desc) in image.layers.iter().enumerate() {
        let Some(path) = verified.get(i) else {
            return Ok(None);
        };
        x.apply_blob(&path, &desc.media_type).with_context(|| {
            format!(
                "layer {}/{n} ({}) of {}",
                i + 1,
                desc.digest,
                image.reference
            )
        })?;
    }
    x.finish().map(Some)
}

/// The image must have this kernel's module tree, every configured module in
/// its `modules.dep`, and modules built for this kernel: the first problem
/// of `modules::check_tree` about what a node loads refuses it (`verify`
/// reports the same findings, all of them).
fn check_tree(
    tree: &Path,
    cfg: &NodeConfig,
    kver: &str,
    reference: &str,
    kernels_seen: &BTreeSet<String>,
) -> Result<()> {
    let check = modules::check_tree(
        tree,
        &cfg.module_root,
        kver,
        &cfg.modules,
        &cfg.parameters,
        kernels_seen,
        modules::Scope::Loads,
    )?;
    if let Some(refusal) = check.first_refusal() {
        defect!("{reference}: {refusal}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    #[test]
    fn handoff_passes_blobs_in_order_and_ends_on_close() {
        let h = Handoff::default();
        let got = std::thread::scope(|s| {
            // The reader waits for blobs pushed after it started.
            let reader = s.spawn(|| [h.get(0), h.get(1), h.get(2)]);
            h.push(PathBuf::from("a"));
            h.push(PathBuf::from("b"));
            h.close();
            reader.join().unwrap()
        });
        assert_eq!(got, [Some("a".into()), Some("b".into()), None]);
        // After close, what was pushed is still there.
        assert_eq!(h.get(1), Some(PathBuf::from("b")));
    }

    #[test]
    fn modules_dep_paths_must_stay_in_the_tree() {
        let tmp = TempDir::new("checktree").unwrap();
        let tree = tmp.path();
        let k = "6.1.0-1-amd64";
        let mdir = tree.join("lib/modules").join(k);
        fs::create_dir_all(&mdir).unwrap();
        let cfg = NodeConfig::new("registry.test/drv:1", vec!["sfc".into()]);
        let seen = BTreeSet::new();
        for (dep, why) in [
            ("/lib/modules/x/sfc.ko:\n", "outside the module tree"),
            (
                "extra/sfc.ko: ../../../../etc/shadow\n",
                "outside the module tree",
            ),
            ("extra/sfc.ko:\n", "`extra/sfc.ko` is listed but missing"),
            ("extra/other.ko:\n", "module sfc [6.1.0-1-amd64]: not in"),
        ] {
            fs::write(mdir.join("modules.dep"), dep).unwrap();
            let e = format!("{:#}", check_tree(tree, &cfg, k, "drv", &seen).unwrap_err());
            assert!(e.contains(why), "{dep}: {e}");
        }
        let e = format!(
            "{:#}",
            check_tree(tree, &cfg, "6.1.0-2-amd64", "drv", &seen).unwrap_err()
        );
        assert!(e.contains("its kernel trees: none"), "{e}");
        // No modules.dep: the image's fault, said without an errno.
        fs::remove_file(mdir.join("modules.dep")).unwrap();
        let e = check_tree(tree, &cfg, k, "drv", &seen).unwrap_err();
        assert!(crate::extract::is_defect(&e));
        assert_eq!(
            format!("{e:#}"),
            format!("drv: modules.dep [{k}]: the image has no /opt/lib/modules/{k}/modules.dep: build the image with `depmod -b /opt {k}`")
        );
    }

    /// A configured parameter the module does not declare, or a value its
    /// type cannot take, refuses the image before it is published: Linux
    /// would load the module with its defaults, or fail the load at boot.
    #[test]
    fn check_tree_refuses_parameters_the_module_does_not_take() {
        let tmp = TempDir::new("checkparams").unwrap();
        let tree = tmp.path();
        let k = "6.1.0-1-amd64";
        let mdir = tree.join("lib/modules").join(k);
        fs::create_dir_all(mdir.join("extra")).unwrap();
        fs::write(mdir.join("modules.dep"), "extra/sfc.ko:\n").unwrap();
        let modinfo = format!(
            "name=sfc\0vermagic={k} SMP mod_unload \0parm=rss_cpus:CPUs for RSS\0parmtype=rss_cpus:uint\0parmtype=debug:bool\0\0"
        );
        let ko = crate::modinfo::tests::tiny_ko(true, false, modinfo.as_bytes(), false);
        fs::write(mdir.join("extra/sfc.ko"), ko).unwrap();
        let seen = BTreeSet::new();
        let mut cfg = NodeConfig::new("registry.test/drv:1", vec!["sfc".into()]);
        for ok in [vec!["rss_cpus=4", "debug"], vec![]] {
            cfg.parameters
                .insert("sfc".into(), ok.iter().map(|s| s.to_string()).collect());
            check_tree(tree, &cfg, k, "drv", &seen).unwrap();
        }
        for (params, want) in [
            (
                "rss_cpu=4",
                "drv: parameters sfc [6.1.0-1-amd64]: `rss_cpu` is not a parameter of sfc (did you mean `rss_cpus`?); its parameters: rss_cpus, debug: fix `[parameters]` in the config",
            ),
            (
                "rss_cpus=-4",
                "drv: parameters sfc [6.1.0-1-amd64]: `rss_cpus=-4`: out of range (`rss_cpus` is uint): fix",
            ),
        ] {
            cfg.parameters.insert("sfc".into(), vec![params.to_string()]);
            let e = check_tree(tree, &cfg, k, "drv", &seen).unwrap_err();
            assert!(crate::extract::is_defect(&e), "{e:#}");
            assert!(format!("{e:#}").starts_with(want), "{e:#}");
        }
    }
}
