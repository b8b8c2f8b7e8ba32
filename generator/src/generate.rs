//! `kmm-day1 generate`: input → validated node config → requested output.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kmm_day1_config::NodeConfig;

use crate::cli::GenerateArgs;
use crate::ignition::{self, Payload};
use crate::output::Format;
use crate::{agent, fit, input, output, size, write};

/// Stands in for the pool when only the size of a would-be MachineConfig is
/// needed (Ignition output has no pool); its length barely matters.
const SIZE_PROBE_POOL: &str = "worker";

pub fn run(args: &GenerateArgs) -> Result<()> {
    if args.no_compress {
        bail!("--no-compress was removed: it could never succeed (the agent alone is about 1.8 MB as uncompressed base64, above the 1.25 MiB limit), and every release this tool supports (OpenShift 4.12+, Ignition spec 3.2+) accepts gzip; drop the flag");
    }
    ignition::check_version(&args.ignition_version)?;
    if args.worker_image.is_some() {
        crate::warn("--worker-image is ignored: the kmm-day1 agent pulls and loads the module itself; there is no KMM worker container at boot");
    }
    // Bad --rendered input fails before the (slow) compression of the agent.
    let rendered = match &args.rendered {
        Some(_) if matches!(args.format, Format::Config | Format::DisruptionPolicy) => bail!(
            "--rendered needs an output that installs the agent: use --format machineconfig, butane or ignition"
        ),
        Some(path) => Some(fit::load(path)?),
        None => None,
    };
    let all = input::load(args)?;
    for l in &all {
        for w in &l.warnings {
            crate::warn(w);
        }
    }
    if let Some(release) = &args.explain_kernel {
        return explain(&all, release);
    }
    if args.check_image.is_some() || args.policy.is_some() {
        // The agent to run must be this machine's: --agent only when it is.
        let host_arch = matches!(
            (args.arch, std::env::consts::ARCH),
            (agent::Arch::X86_64, "x86_64") | (agent::Arch::Aarch64, "aarch64")
        );
        let agent = args.agent.as_deref().filter(|_| host_arch);
        let configs: Vec<(&str, String)> = all
            .iter()
            .map(|l| (l.name.as_str(), l.config.to_toml()))
            .collect();
        if let Some(layout) = &args.check_image {
            crate::verify::check_configs(agent, layout, args.check_kernel.as_deref(), &configs)?;
        }
        if let Some(policy) = &args.policy {
            crate::verify::warn_policy(
                agent,
                policy,
                args.policy_registries_d.as_deref(),
                args.policy_kernel.as_deref(),
                &configs,
            )?;
        }
    }
    let several = all.len() > 1;
    if several {
        if matches!(args.format, Format::Ignition | Format::Config) {
            bail!(
                "--format {} writes one config, but the input has {} objects: split the file, or use --format machineconfig or butane (one per object) or disruption-policy (one for all)",
                format_name(args.format),
                all.len()
            );
        }
        if args.mc_name.is_some() {
            bail!(
                "--mc-name names one MachineConfig, but the input has {} objects; drop --mc-name",
                all.len()
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for l in &all {
            if !seen.insert(l.name.as_str()) {
                bail!("two objects map to the config name `{}` (/etc/kmm-day1/{}.toml): give them distinct metadata.name", l.name, l.name);
            }
        }
    }

    let mut docs = Vec::with_capacity(all.len());
    for l in &all {
        docs.push(one(args, l)?);
    }
    if several {
        let mut names = std::collections::BTreeSet::new();
        for d in &docs {
            if let Some(n) = &d.mc_name {
                if !names.insert(n.as_str()) {
                    bail!("two objects map to the MachineConfig name `{n}`: give them distinct machineConfigName or metadata.name");
                }
            }
        }
    }

    let text = if args.format == Format::DisruptionPolicy {
        let paths: Vec<String> = all
            .iter()
            .map(|l| {
                Payload {
                    name: &l.name,
                    agent: &[],
                    config_toml: "",
                }
                .config_path()
            })
            .collect();
        output::disruption::render(&paths)?
    } else {
        // One YAML stream, `---` between documents (`oc create -f` takes it).
        docs.iter()
            .map(|d| d.text.as_str())
            .collect::<Vec<_>>()
            .join("---\n")
    };

    let mut notes: Vec<String> = Vec::new();
    if let Some(rendered) = &rendered {
        notes.extend(check_fit(rendered, &docs)?);
    }
    for d in &docs {
        if let Some(n) = d.mc_bytes {
            let pool = d.pool.as_deref().unwrap_or(SIZE_PROBE_POOL);
            for note in size::check(n, pool, rendered.is_some())? {
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
    }
    write::emit(&text, args.output.as_deref())?;
    let mc_sizes: Vec<String> = docs
        .iter()
        .filter_map(|d| d.mc_bytes)
        .map(|n| n.to_string())
        .collect();
    let mc_part = match (args.format, mc_sizes.len()) {
        (_, 0) => String::new(),
        (Format::Machineconfig, 1) => String::new(),
        (Format::Machineconfig, _) => format!(
            " ({} MachineConfigs: {} bytes)",
            mc_sizes.len(),
            mc_sizes.join(", ")
        ),
        (_, 1) => format!("; the MachineConfig would be {} bytes", mc_sizes[0]),
        (_, n) => format!(
            "; the {n} MachineConfigs would be {} bytes",
            mc_sizes.join(", ")
        ),
    };
    eprintln!(
        "kmm-day1: {} output: {} bytes{mc_part}",
        format_name(args.format),
        text.len()
    );
    for n in notes {
        eprintln!("{n}");
    }
    Ok(())
}

/// `--explain-kernel`: per config, the mapping and image `release` gets, on
/// stdout; the agent's own resolution (`NodeConfig::resolve`), so what is
/// printed is what a node would pull.
fn explain(all: &[input::Loaded], release: &str) -> Result<()> {
    let mut out = String::new();
    for l in all {
        let resolved = l
            .config
            .resolve(&l.name, release)
            .with_context(|| format!("--explain-kernel {release} (config `{}`)", l.name))?;
        let rule = match l.config.mapping_for(release) {
            Some((i, m)) => format!("kernel_mappings[{i}] ({})", input::describe_mapping(m)),
            None if l.config.kernel_mappings.is_empty() => {
                "the top-level image (no kernel_mappings)".into()
            }
            None => "no kernel mapping matches".into(),
        };
        let what = match &resolved {
            Some(r) => format!(
                "image {}; removes in-tree {}",
                r.reference,
                match r.in_tree_remove.as_slice() {
                    [] => "nothing".to_string(),
                    list => list.join(", "),
                }
            ),
            None => "nothing is loaded on this kernel (as KMM: no mapping, no module)".into(),
        };
        out += &format!("{}: kernel {release}: {rule}: {what}\n", l.name);
    }
    write::emit(&out, None)
}

/// One document's output, before the documents are joined.
struct Rendered {
    text: String,
    /// Size of its MachineConfig, for formats that carry the agent.
    mc_bytes: Option<usize>,
    /// Its Ignition config, for `--rendered`.
    ignition: Option<serde_json::Value>,
    mc_name: Option<String>,
    pool: Option<String>,
}

fn one(args: &GenerateArgs, loaded: &input::Loaded) -> Result<Rendered> {
    let pool = resolve_pool(
        args.pool.as_deref(),
        loaded.pool.as_deref(),
        loaded.pool_source,
    )?;
    let name = loaded.name.as_str();
    let toml = loaded.config.to_toml();
    // What the agent will read must be what was validated: parse it back.
    let file = format!("{name}.toml");
    let reparsed = NodeConfig::parse(Path::new(&file), &toml)
        .context("internal error: the written node config does not read back")?;
    if reparsed != loaded.config {
        bail!("internal error: the written node config reads back differently");
    }

    let needs_pool = matches!(args.format, Format::Machineconfig | Format::Butane);
    if needs_pool && pool.is_none() {
        bail!(
            "--pool is required for --format {}: name the MachineConfigPool role, e.g. --pool worker",
            format_name(args.format)
        );
    }
    let explicit_mc = match (args.mc_name.as_deref(), loaded.mc_name.as_deref()) {
        (Some(f), Some(i)) if f != i => {
            crate::warn(&format!(
                "--mc-name {f} differs from the BootModuleConfig's machineConfigName `{i}`; using --mc-name {f}"
            ));
            Some(f)
        }
        (f, i) => f.or(i),
    };

    let (text, mc_bytes, mc_name, ignition) = match args.format {
        Format::Config => (toml.clone(), None, None, None),
        // Rendered for all documents together by the caller.
        Format::DisruptionPolicy => (String::new(), None, None, None),
        Format::Machineconfig | Format::Butane | Format::Ignition => {
            let agent = agent::load(args.arch, args.agent.as_deref())?;
            let payload = Payload {
                name,
                agent: &agent,
                config_toml: &toml,
            };
            let ign = ignition::build(&payload, &args.ignition_version);
            let size_pool = pool.as_deref().unwrap_or(SIZE_PROBE_POOL);
            let mc_name = output::mc_name(explicit_mc, size_pool, name)?;
            let mc = output::machineconfig::render(&mc_name, size_pool, &ign);
            let text = match args.format {
                Format::Machineconfig => mc.clone(),
                Format::Butane => {
                    output::butane::render(&mc_name, size_pool, &payload, &args.ignition_version)
                }
                _ => ignition::to_json(&ign),
            };
            let ign_json = serde_json::to_value(&ign)
                .context("internal error: the Ignition config does not serialise")?;
            (text, Some(mc.len()), Some(mc_name), Some(ign_json))
        }
    };
    Ok(Rendered {
        text,
        mc_bytes,
        ignition,
        mc_name,
        pool,
    })
}

/// `--rendered`: the notes to print, or the refusal when the pool would not fit.
fn check_fit(rendered: &fit::Rendered, docs: &[Rendered]) -> Result<Vec<String>> {
    let ours: Vec<serde_json::Value> = docs.iter().filter_map(|d| d.ignition.clone()).collect();
    if let Some(pool) = rendered.pool() {
        for d in docs {
            if let Some(p) = d.pool.as_deref().filter(|p| *p != pool) {
                crate::warn(&format!(
                    "--rendered {} is pool `{pool}`'s, but this MachineConfig is for pool `{p}`",
                    rendered.name()
                ));
            }
        }
    }
    let what = match ours.len() {
        1 => "this MachineConfig".to_string(),
        n => format!("these {n} MachineConfigs"),
    };
    rendered.report(&rendered.merge(&ours), &what)
}

fn resolve_pool(
    flag: Option<&str>,
    from_input: Option<&str>,
    source: &str,
) -> Result<Option<String>> {
    let (pool, what) = match (flag, from_input) {
        (Some(f), Some(i)) if f != i => {
            crate::warn(&format!(
                "--pool {f} differs from {source} `{i}`; using --pool {f}"
            ));
            (Some(f), "--pool")
        }
        (Some(f), _) => (Some(f), "--pool"),
        (None, i) => (i, source),
    };
    if let Some(p) = pool {
        output::check_pool(p, what)?;
    }
    Ok(pool.map(str::to_string))
}

pub fn format_name(f: Format) -> &'static str {
    match f {
        Format::Machineconfig => "machineconfig",
        Format::Butane => "butane",
        Format::Ignition => "ignition",
        Format::Config => "config",
        Format::DisruptionPolicy => "disruption-policy",
    }
}
