//! `replace --dry-run`: the plan for every config, what `status` says of
//! it, and the exit code both share; as JSON (docs/replace.md) or text.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{plan_config, Ctx, TreeCache};
use crate::context::RunContext;
use crate::kernel::Real;
use crate::plan::{ModinfoCache, Plan, Source};
use crate::status;

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

/// What a plan for one config came to; `status` in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    /// A swap to carry out (`plan` says which).
    Planned,
    /// The image's modules already run: nothing to do.
    UpToDate,
    /// No verified tree in the store for this kernel yet.
    WaitingForPull,
    /// No kernel mapping matches this kernel.
    NoMapping,
    /// No plan could be made (`error`).
    Error,
}

#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub name: String,
    pub status: PlanStatus,
    /// The image reference the config resolved to (for the journal line;
    /// not part of the dry run's output).
    #[serde(skip)]
    pub reference: Option<String>,
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

/// Plan every config and print the report. Nothing is locked or written:
/// a dry run may run beside a real one.
pub(super) fn dry_run(
    run: &RunContext,
    ctx: &Ctx<'_>,
    json: bool,
    kernel: &Real,
) -> Result<ExitCode> {
    let mut cache = ModinfoCache::new();
    let mut trees = TreeCache::new();
    let configs = run
        .configs
        .iter()
        .map(|(name, cfg)| plan_config(ctx, name, cfg, kernel, &mut cache, &mut trees))
        .collect();
    let mut report = Report {
        kernel: run.kernel.clone(),
        health: None,
        exit_code: 0,
        configs,
    };
    // On the store, the same state, health and exit code as `status`:
    // a script asking "is this node right?" must get one answer from
    // either command. A plan that cannot be made is at least 1 (status
    // does not plan, so it is the one thing the dry run knows better).
    let planned_ok = !report.configs.iter().any(|c| c.status == PlanStatus::Error);
    let mut code = u8::from(!planned_ok);
    if ctx.modules_root.is_none() {
        let st = status::collect(run, kernel)?;
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
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::from(code))
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
            PlanStatus::NoMapping => {
                let _ = writeln!(s, "no kernel mapping matches this kernel: nothing to do");
            }
            PlanStatus::WaitingForPull => {
                let _ = writeln!(
                    s,
                    "no verified tree in the store for this kernel: waiting for pull"
                );
            }
            PlanStatus::Error => {
                let _ = writeln!(
                    s,
                    "cannot plan: {}",
                    c.error.as_deref().unwrap_or("unknown error")
                );
            }
            PlanStatus::Planned | PlanStatus::UpToDate => {
                let p = c.plan.as_ref();
                let _ = writeln!(
                    s,
                    "{} (tree {}{})",
                    if c.status == PlanStatus::UpToDate {
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
                let Some(p) = p.filter(|_| c.status == PlanStatus::Planned) else {
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
                if !p.not_restored.is_empty() {
                    let _ = writeln!(
                        s,
                        "  removed and not loaded again (no build in the image): {}",
                        p.not_restored.join(", ")
                    );
                }
                if !p.builtin.is_empty() {
                    let _ = writeln!(s, "  built into the kernel: {}", p.builtin.join(", "));
                }
            }
        }
    }
    s
}
