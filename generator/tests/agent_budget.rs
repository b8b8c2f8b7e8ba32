//! The real static agents fit the MachineConfig budget (design §2, §6):
//! a MachineConfig for examples/sfc.toml must be accepted (≤ 1.25 MiB) for
//! every architecture. When this fails, the agent has outgrown what a pool
//! can carry; the message gives the numbers.

#![allow(clippy::unwrap_used)]

mod util;

use util::kmm_day1;

fn agent_for(arch: &str) -> Option<(Vec<String>, std::path::PathBuf)> {
    let embedded = match arch {
        "x86_64" => option_env!("KMM_DAY1_EMBEDDED_X86_64"),
        _ => option_env!("KMM_DAY1_EMBEDDED_AARCH64"),
    };
    if let Some(p) = embedded {
        return Some((Vec::new(), p.into()));
    }
    let p = kmm_day1_tests::static_agent(arch)?;
    Some((vec!["--agent".into(), p.display().to_string()], p))
}

#[test]
fn real_agents_fit_the_machineconfig_budget() {
    for arch in ["x86_64", "aarch64"] {
        let Some((extra, file)) = agent_for(arch) else {
            continue;
        };
        let mut args = vec!["generate", "--config", "examples/sfc.toml"];
        args.extend(["--pool", "worker", "--arch", arch]);
        args.extend(extra.iter().map(String::as_str));
        let out = kmm_day1(&args);
        let agent_len = util::read(&file).len();
        assert_eq!(
            out.code,
            0,
            "the {arch} agent ({agent_len} bytes, {}) does not fit a MachineConfig: {}",
            file.display(),
            out.stderr.trim_end()
        );
        eprintln!(
            "{arch}: agent {agent_len} bytes -> MachineConfig {} bytes",
            out.stdout.len()
        );
    }
}
