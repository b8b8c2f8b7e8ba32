//! `kmm-day1 generate`: input → validated node config → requested output.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kmm_day1_config::NodeConfig;

use crate::cli::{Format, GenerateArgs};
use crate::ignition::{self, Payload};
use crate::{agent, input, output, size, write};

/// Stands in for the pool when only the size of a would-be MachineConfig is
/// needed (Ignition output has no pool); its length barely matters.
const SIZE_PROBE_POOL: &str = "worker";

pub fn run(args: &GenerateArgs) -> Result<()> {
    ignition::check_version(&args.ignition_version)?;
    let loaded = input::load(args)?;
    for w in &loaded.warnings {
        crate::warn(w);
    }
    let pool = resolve_pool(args.pool.as_deref(), loaded.pool.as_deref())?;
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

    let (text, mc_bytes) = match args.format {
        Format::Config => (toml.clone(), None),
        Format::DisruptionPolicy => {
            let p = Payload {
                name,
                agent: &[],
                config_toml: &toml,
            };
            (output::disruption::render(&p.config_path()), None)
        }
        Format::Machineconfig | Format::Butane | Format::Ignition => {
            let agent = agent::load(args.arch, args.agent.as_deref())?;
            let payload = Payload {
                name,
                agent: &agent,
                config_toml: &toml,
            };
            let compress = !args.no_compress;
            let ign = ignition::build(&payload, &args.ignition_version, compress);
            let size_pool = pool.as_deref().unwrap_or(SIZE_PROBE_POOL);
            let mc_name = output::mc_name(args.mc_name.as_deref(), size_pool, name)?;
            let mc = output::machineconfig::render(&mc_name, size_pool, &ign);
            let text = match args.format {
                Format::Machineconfig => mc.clone(),
                Format::Butane => output::butane::render(
                    &mc_name,
                    size_pool,
                    &payload,
                    &args.ignition_version,
                    compress,
                ),
                _ => ignition::to_json(&ign),
            };
            (text, Some(mc.len()))
        }
    };

    let notes = match mc_bytes {
        Some(n) => size::check(n, pool.as_deref().unwrap_or(SIZE_PROBE_POOL))?,
        None => Vec::new(),
    };
    write::emit(&text, args.output.as_deref())?;
    let mc_part = match mc_bytes {
        Some(n) if args.format != Format::Machineconfig => {
            format!("; the MachineConfig would be {n} bytes")
        }
        _ => String::new(),
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

fn resolve_pool(flag: Option<&str>, from_input: Option<&str>) -> Result<Option<String>> {
    let pool = match (flag, from_input) {
        (Some(f), Some(i)) if f != i => {
            crate::warn(&format!(
                "--pool {f} differs from the Module's selector role `{i}`; using --pool {f}"
            ));
            Some(f)
        }
        (Some(f), _) => Some(f),
        (None, i) => i,
    };
    if let Some(p) = pool {
        output::check_pool(p)?;
    }
    Ok(pool.map(str::to_string))
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Machineconfig => "machineconfig",
        Format::Butane => "butane",
        Format::Ignition => "ignition",
        Format::Config => "config",
        Format::DisruptionPolicy => "disruption-policy",
    }
}
