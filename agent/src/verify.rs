//! `verify` (see `cli::VERIFY_HELP`, docs/status.md): the checks `pull` and
//! `replace` make on a node, made on any machine before a rollout — in a
//! temporary directory, never the store, and reported one line per check
//! instead of stopping at the first problem.
//!
//! It reuses the pull pipeline as is (image sources, verified blob
//! downloads, the filtered extractor), so what passes here is what a node
//! would extract. `kmm-day1 verify` on a workstation runs this same code:
//! the generator execs the agent it embeds (docs/status.md says why).

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kmm_day1_config::{module_name_canonical, ImageRef, NodeConfig};

use crate::blobs;
use crate::cli;
use crate::extract::{Caps, Extractor, Filter};
use crate::modules::{self, Check, Scope, TreeModule};
use crate::oci::layout::OciLayout;
use crate::oci::{ImageSource, Platform, ResolvedImage};
use crate::policy::{self, NodePolicy};
use crate::registry::{Registry, RegistryOptions};
use crate::units::{self, Tenths};

/// Default `firmware_dir` to look in: where KMM images keep firmware
/// (`firmwarePath` copies from there).
const DEFAULT_FIRMWARE_DIR: &str = "/firmware";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        })
    }
}

/// Prints each check as it is made (a slow pull still shows progress).
#[derive(Debug, Default)]
struct Checks {
    counts: [usize; 3],
}

impl Checks {
    fn line(&mut self, v: Verdict, check: &str, detail: impl fmt::Display) {
        self.counts[v as usize] += 1;
        println!("{v} {check}: {}", detail.to_string().replace('\n', " "));
    }
    fn ok(&mut self, check: &str, detail: impl fmt::Display) {
        self.line(Verdict::Ok, check, detail);
    }
    fn warn(&mut self, check: &str, detail: impl fmt::Display) {
        self.line(Verdict::Warn, check, detail);
    }
    fn fail(&mut self, check: &str, detail: impl fmt::Display) {
        self.line(Verdict::Fail, check, detail);
    }
    fn failed(&self) -> usize {
        self.counts[Verdict::Fail as usize]
    }
}

/// A directory removed on drop, whatever happened.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p =
            std::env::temp_dir().join(format!("kmm-day1-verify-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&p).with_context(|| {
            format!(
                "creating {} (set TMPDIR to a writable directory)",
                p.display()
            )
        })?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn run(opts: &cli::VerifyOpts) -> Result<ExitCode> {
    let cfg = config(opts)?;
    let mut checks = Checks::default();
    let tmp = TempDir::new()?;
    let result = verify(opts, &cfg, &tmp.0, &mut checks);
    if let Err(e) = result {
        checks.fail("image", format!("{e:#}"));
    }
    let [ok, warn, fail] = checks.counts;
    println!(
        "verify: {}: {ok} ok, {warn} warn, {fail} FAIL",
        units::count(ok + warn + fail, "check")
    );
    Ok(if checks.failed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The config the checks read: `--config`, overridden by the flags.
fn config(opts: &cli::VerifyOpts) -> Result<NodeConfig> {
    let mut cfg = match &opts.config {
        Some(path) => NodeConfig::load(path).map_err(anyhow::Error::from)?,
        None => NodeConfig::new(String::new(), Vec::new()),
    };
    if let Some(i) = &opts.image {
        cfg.image = Some(i.clone());
    }
    if !opts.modules.is_empty() {
        cfg.modules = opts.modules.clone();
    }
    if let Some(r) = &opts.module_root {
        cfg.module_root = r.clone();
    }
    if let Some(f) = &opts.firmware_dir {
        cfg.firmware_dir = Some(f.clone());
    }
    if opts.insecure {
        cfg.pull.insecure = true;
    }
    Ok(cfg)
}

fn verify(opts: &cli::VerifyOpts, cfg: &NodeConfig, tmp: &Path, checks: &mut Checks) -> Result<()> {
    // The reference: with a kernel, as a node would resolve it (variables,
    // kernel mappings); without one it must be literal.
    let (reference, image, insecure, skip_verify) = match &opts.kernel_release {
        Some(k) => match cfg.resolve("verify", k).map_err(anyhow::Error::from)? {
            Some(r) => (r.reference, r.image, r.insecure, r.insecure_skip_tls_verify),
            None => bail!("no kernel mapping of the config matches kernel {k}"),
        },
        None => {
            let s = cfg.image.clone().unwrap_or_default();
            if s.contains('$') {
                bail!("`{s}` uses kernel variables: pass --kernel-release to say which kernel");
            }
            let image = ImageRef::parse(&s).map_err(anyhow::Error::from)?;
            (
                s,
                image,
                cfg.pull.insecure,
                cfg.pull.insecure_skip_tls_verify,
            )
        }
    };
    let t0 = Instant::now();
    let resolving = || format!("resolving {reference}");
    let (mut src, resolved): (Box<dyn ImageSource>, _) = match &opts.oci_layout {
        Some(dir) => {
            let mut layout = OciLayout::open(dir, Platform::host())?;
            let resolved = layout.resolve(&image).with_context(resolving)?;
            (Box::new(layout), resolved)
        }
        None => {
            let mut ro = registry_options(cfg, opts.retry_for.unwrap_or(RETRY_FOR_SECS));
            ro.insecure = insecure;
            ro.insecure_skip_tls_verify = skip_verify;
            let mut reg = Registry::new(ro)?;
            let resolved = reg.resolve(&image).with_context(resolving)?;
            // As `pull` does: the signatures before any layer.
            if !check_signatures(opts, &image, &resolved, &mut reg, checks)? || opts.signatures_only
            {
                return Ok(());
            }
            (Box::new(reg), resolved)
        }
    };
    let total: u64 = resolved.layers.iter().map(|l| l.size).sum();
    let blobs_dir = tmp.join("blobs/sha256");
    let n = resolved.layers.len();
    let mut paths = Vec::with_capacity(n);
    for (i, layer) in resolved.layers.iter().enumerate() {
        let label = format!("layer {}/{n}", i + 1);
        paths.push(blobs::fetch(
            &blobs_dir,
            src.as_mut(),
            &resolved,
            layer,
            &label,
        )?);
    }
    checks.ok(
        "image",
        format!(
            "{reference} is {} from {} ({}, {}, verified in {}s)",
            resolved.digest,
            resolved.source,
            units::count(n, "layer"),
            units::size(total),
            Tenths::of(t0.elapsed())
        ),
    );

    // What replace would meet on this machine, when it enforces SELinux.
    if let Some(se) = crate::selinux::status(Path::new("/"), Path::new(kmm_day1_config::STORE_DIR))
    {
        checks.ok("selinux", se.line());
    }

    let root = cfg.module_root.trim_end_matches('/');
    let kernels: Vec<String> = match &opts.kernel_release {
        Some(k) => vec![k.clone()],
        None => {
            // No tar entry can name a NUL: this pass only lists the trees.
            let (seen, _) = extract(cfg, "\0", &resolved, &paths, &tmp.join("scan"))?;
            if seen.is_empty() {
                checks.fail(
                    "kernels",
                    format!("no module tree under {root}/lib/modules: is --module-root right (KMM images use /opt)?"),
                );
                return Ok(());
            }
            checks.ok(
                "kernels",
                format!(
                    "{} under {root}/lib/modules",
                    seen.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            seen.into_iter().collect()
        }
    };
    for (i, k) in kernels.iter().enumerate() {
        let dir = tmp.join(format!("tree-{i}"));
        let (seen, _) = extract(cfg, k, &resolved, &paths, &dir)?;
        check_kernel(cfg, k, &dir, &seen, checks)?;
    }
    Ok(())
}

/// The `signatures` line: what the policy (`--policy`, else this
/// machine's) decides for `image`. False when it refuses it.
fn check_signatures(
    opts: &cli::VerifyOpts,
    image: &ImageRef,
    resolved: &ResolvedImage,
    reg: &mut Registry,
    checks: &mut Checks,
) -> Result<bool> {
    let file = opts
        .policy
        .as_deref()
        .unwrap_or(Path::new(policy::POLICY_FILE));
    let dir = opts
        .registries_d
        .as_deref()
        .unwrap_or(Path::new(policy::REGISTRIES_D));
    let node = match NodePolicy::load_files(file, dir) {
        Ok(n) => n,
        Err(e) => {
            checks.fail("policy", format!("{e:#}"));
            return Ok(false);
        }
    };
    match node.check_pull(image, resolved, reg) {
        Ok(None) => checks.ok(
            "policy",
            format!(
                "not checked: {} does not exist (a node without one uses images unsigned)",
                file.display()
            ),
        ),
        Ok(Some(a)) => checks.ok(
            "policy",
            format!("allowed by {} ({}): {}", file.display(), a.scope, a.by),
        ),
        Err(e) if e.downcast_ref::<policy::PolicyError>().is_some() => {
            checks.fail("policy", format!("{e:#}"));
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    Ok(true)
}

/// `verify`'s default retry budget: an interactive or CI command should
/// fail in seconds on an unreachable registry, not spend the node's 15
/// minutes (a node must ride out DNS and network that come up late; a
/// workstation has no such excuse). `--retry-for SECS` gives more.
pub const RETRY_FOR_SECS: u64 = 20;

fn registry_options(cfg: &NodeConfig, retry_for: u64) -> RegistryOptions {
    let mut opts =
        RegistryOptions::node_defaults(cfg, Instant::now() + Duration::from_secs(retry_for));
    opts.budget_spent = format!("verify retries for {retry_for} s; `--retry-for SECS` allows more");
    // A workstation's own logins (podman, docker), after the config's.
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        opts.auth_files
            .push(PathBuf::from(d).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        opts.auth_files
            .push(PathBuf::from(h).join(".docker/config.json"));
    }
    opts
}

/// Extract `kver`'s tree and the firmware dir into `dest`, as `pull` would.
fn extract(
    cfg: &NodeConfig,
    kver: &str,
    image: &ResolvedImage,
    paths: &[PathBuf],
    dest: &Path,
) -> Result<(BTreeSet<String>, u64)> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let filter = Filter {
        module_root: cfg.module_root.clone(),
        kernel: kver.to_string(),
        firmware_dir: Some(
            cfg.firmware_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_FIRMWARE_DIR.to_string()),
        ),
    };
    let mut x = Extractor::new(
        dest,
        &filter,
        Caps {
            max_entries: cfg.limits.max_entries,
            max_bytes: cfg.limits.max_extract_bytes,
            max_tar_bytes: cfg.limits.max_tar_bytes,
        },
    );
    let n = paths.len();
    for (i, (path, desc)) in paths.iter().zip(&image.layers).enumerate() {
        x.apply_blob(path, &desc.media_type)
            .with_context(|| format!("layer {}/{n} ({})", i + 1, desc.digest))?;
    }
    let summary = x.finish()?;
    Ok((summary.kernels_seen, summary.files))
}

fn check_kernel(
    cfg: &NodeConfig,
    kver: &str,
    tree: &Path,
    seen: &BTreeSet<String>,
    checks: &mut Checks,
) -> Result<()> {
    let found = modules::check_tree(
        tree,
        &cfg.module_root,
        kver,
        &cfg.modules,
        &cfg.parameters,
        seen,
        Scope::Whole,
    )?;
    let tag = |c: &str| format!("{c} [{kver}]");
    // Each check's line: the problems `pull` would refuse for (and the rest)
    // in the same words, or what was found when there are none.
    let report = |checks: &mut Checks, c: &Check, ok: String| {
        let problems = found.problems(c);
        if problems.is_empty() {
            checks.ok(&tag(&c.label()), ok);
        } else {
            // found.line is `<label> [<kver>]: …`, the check's own tag first.
            let line = found.line(c, &problems);
            let tag = tag(&c.label());
            checks.fail(
                &tag,
                line.strip_prefix(&format!("{tag}: ")).unwrap_or(&line),
            );
        }
    };
    if !found.complete {
        for c in [Check::Tree, Check::NoModulesDep] {
            if !found.problems(&c).is_empty() {
                report(checks, &c, String::new());
            }
        }
        return Ok(());
    }
    let place = &found.place;
    report(checks, &Check::Tree, format!("{place} present"));
    report(
        checks,
        &Check::ModulesDep,
        format!(
            "{}, every file and dependency present",
            units::count(found.entries.len(), "module")
        ),
    );
    let info_of = |rel: &str| {
        found
            .modules
            .iter()
            .find(|x| x.rel == rel)
            .and_then(|x| x.info.as_ref())
    };
    let in_image = |m: &str| {
        let c = module_name_canonical(m);
        found
            .entries
            .iter()
            .any(|(p, _)| modules::module_name_from_path(p) == c)
    };

    // The configured modules and what they need: the files a node loads.
    let mut needed: BTreeSet<String> = BTreeSet::new();
    if cfg.modules.is_empty() {
        checks.warn(
            &format!("modules [{kver}]"),
            "none named (--module or --config): only the tree was checked",
        );
    }
    for (m, idx) in &found.configured {
        let check = Check::Module(m.clone());
        let Some((path, deps)) = idx.map(|i| &found.entries[i]) else {
            report(checks, &check, String::new());
            continue;
        };
        needed.insert(path.to_string());
        needed.extend(deps.iter().map(|d| d.to_string()));
        // `.modinfo depends=` names what modules.dep could not resolve
        // when depmod saw only the image's modules.
        let from_host: Vec<&String> = info_of(path)
            .map(|i| i.depends.iter().filter(|d| !in_image(d)).collect())
            .unwrap_or_default();
        let needs = if deps.is_empty() {
            String::new()
        } else {
            format!(", needs {}", deps.join(" "))
        };
        report(checks, &check, format!("{path}{needs}"));
        if !from_host.is_empty() {
            checks.warn(
                &tag(&check.label()),
                format!(
                    "depends on {} (`.modinfo depends=`), not in the image: it loads only if the node's /lib/modules/{kver} has it",
                    from_host.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    report(
        checks,
        &Check::Vermagic,
        format!(
            "{} built for {kver}",
            units::count(found.modules.len(), "module")
        ),
    );
    // The hardware gate: which devices a node needs for the swap.
    let aliases: Vec<(String, Vec<String>)> = found
        .configured
        .iter()
        .filter_map(|(m, idx)| {
            let info = info_of(&found.entries[(*idx)?].0)?;
            Some((m.clone(), info.aliases.clone()))
        })
        .collect();
    let device_aliases: Vec<&str> = aliases
        .iter()
        .flat_map(|(_, a)| a.iter().map(String::as_str))
        .filter(|a| crate::devices::is_device_alias(a))
        .collect();
    let devices = format!("devices [{kver}]");
    match (device_aliases.first(), cfg.replace.require_device) {
        (_, Some(false)) => checks.ok(&devices, "require_device = false: every node swaps".to_string()),
        (Some(first), _) => checks.ok(
            &devices,
            format!(
                "{} device alias{} (e.g. `{first}`): a node swaps only with a matching device (require_device)",
                device_aliases.len(),
                if device_aliases.len() == 1 { "" } else { "es" }
            ),
        ),
        (None, Some(true)) => checks.fail(
            &devices,
            "require_device = true, but the modules have no device alias: no node would swap",
        ),
        (None, None) => checks.ok(&devices, "no device aliases: every node swaps".to_string()),
    }
    for (m, idx) in &found.configured {
        if let (Some(_), Some(params)) = (idx, cfg.parameters.get(m)) {
            report(
                checks,
                &Check::Parameters(m.clone()),
                format!("{} declared by the module", params.join(" ")),
            );
        }
    }
    let modules = &found.modules;

    // Firmware the modules ask for, in the image's firmware dir.
    let fw_dir = cfg
        .firmware_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_FIRMWARE_DIR.to_string());
    let fw_root = tree.join("firmware");
    let (mut missing_needed, mut missing_other, mut present) = (Vec::new(), Vec::new(), 0);
    for m in modules {
        for f in m.info.iter().flat_map(|i| i.firmware.iter()) {
            let ok = !f.starts_with('/')
                && !f.split('/').any(|c| c == "..")
                && fw_root.join(f).is_file();
            if ok {
                present += 1;
            } else if needed.contains(&m.rel) || cfg.modules.is_empty() {
                missing_needed.push(format!("{f} (for {})", m.rel));
            } else {
                missing_other.push(format!("{f} (for {})", m.rel));
            }
        }
    }
    if missing_needed.is_empty() {
        checks.ok(
            &tag("firmware"),
            if present == 0 {
                "no module asks for firmware".to_string()
            } else {
                format!(
                    "the modules ask for {}: all in {fw_dir}",
                    units::count(present, "file")
                )
            },
        );
    } else {
        checks.fail(
            &tag("firmware"),
            format!(
                "missing from the image's {fw_dir}: {}: add them, or set firmware_dir to where the image has them",
                missing_needed.join(", ")
            ),
        );
    }
    if !missing_other.is_empty() {
        checks.warn(
            &tag("firmware"),
            format!(
                "modules not configured ask for files not in {fw_dir}: {}",
                missing_other.join(", ")
            ),
        );
    }

    // Signatures: say which; a node with Secure Boot refuses unsigned ones.
    let (signed, unsigned): (Vec<&TreeModule>, Vec<&TreeModule>) = modules
        .iter()
        .filter(|m| m.info.is_some())
        .partition(|m| m.info.as_ref().is_some_and(|i| i.signed));
    if unsigned.is_empty() {
        checks.ok(
            &tag("signatures"),
            format!("{}, all signed", units::count(signed.len(), "module")),
        );
    } else {
        checks.warn(
            &tag("signatures"),
            format!(
                "unsigned: {}{}: nodes with Secure Boot or module.sig_enforce=1 refuse them",
                unsigned
                    .iter()
                    .map(|m| m.rel.as_str())
                    .take(20)
                    .collect::<Vec<_>>()
                    .join(", "),
                if signed.is_empty() {
                    String::new()
                } else {
                    format!(" (signed: {})", signed.len())
                }
            ),
        );
    }
    Ok(())
}
