//! Differential test of the agent's dependency resolution against the real
//! `modprobe --show-depends`, for every module of Debian's kernel tree
//! (unpacked by tests/setup.d/20-kernel-tree.sh, never installed).
//!
//! For each module M: the set of modules the agent's plan loads equals the
//! set modprobe would insmod (paths included), the built-in ones match, and
//! the agent's order satisfies every constraint modprobe's order implies:
//! whatever modprobe loads before X when asked for X alone (X's hard and
//! pre-soft dependencies) comes before X in the agent's order too.
//!
//! The agent runs once, with one config per module, through the real
//! `replace --dry-run --json --modules-root … --kernel-release …` path.

// Helpers outside #[test] fns panic on setup failures too; that is what a test wants.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kmm_day1_tests::require_tool;

mod replace_common;
use replace_common::debian_tree;

fn canonical_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split('.').next().unwrap_or(base).replace('-', "_")
}

/// modprobe's answer for one module: insmod (name, path) in order, builtins.
#[derive(Debug, Default, Clone)]
struct Modprobe {
    insmod: Vec<(String, String)>,
    builtin: Vec<String>,
}

fn modprobe_show_depends(root: &Path, kver: &str, module: &str) -> Modprobe {
    // -C /dev/null: no modprobe.d of this host (the agent reads none either);
    // modprobe still reads the tree's own modules.softdep, as the agent does.
    let out = Command::new("modprobe")
        .args(["-C", "/dev/null", "-d"])
        .arg(root)
        .args(["-S", kver, "--show-depends", module])
        .output()
        .expect("running modprobe");
    assert!(
        out.status.success(),
        "modprobe --show-depends {module}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = Modprobe::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("insmod"), Some(path)) => {
                let name = canonical_name(path);
                if !m.insmod.iter().any(|(n, _)| *n == name) {
                    m.insmod.push((name, path.to_string()));
                }
            }
            (Some("builtin"), Some(name)) => m.builtin.push(name.replace('-', "_")),
            _ => panic!("unexpected modprobe output for {module}: {line}"),
        }
    }
    m
}

#[test]
fn dependency_resolution_matches_modprobe_for_every_module() {
    if !require_tool("modprobe") {
        return;
    }
    let Some((root, kver)) = debian_tree() else {
        return;
    };
    let t0 = Instant::now();
    let kdir = root.join("lib/modules").join(&kver);
    let dep = fs::read_to_string(kdir.join("modules.dep")).unwrap();
    let mut modules: Vec<String> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(p, _)| canonical_name(p))
        .collect();
    modules.sort();
    modules.dedup();
    assert!(
        modules.len() > 1000,
        "a real kernel tree has thousands of modules"
    );

    // One config per module.
    let work = kmm_day1_tests::scratch::TempDir::new("diff").unwrap();
    let configs = work.join("configs");
    fs::create_dir_all(&configs).unwrap();
    for m in &modules {
        fs::write(
            configs.join(format!("m-{m}.toml")),
            format!("image = \"registry.example/driver:1\"\nmodules = [\"{m}\"]\n"),
        )
        .unwrap();
    }
    let t_agent = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kmm-day1-agent"))
        .args(["replace", "--dry-run", "--json", "--config-dir"])
        .arg(&configs)
        .arg("--modules-root")
        .arg(root.join("lib/modules"))
        .args(["--kernel-release", &kver, "--host-modules-root"])
        .arg(work.join("no-host-tree"))
        .arg("--store")
        .arg(work.join("no-store"))
        .output()
        .unwrap();
    let agent_secs = t_agent.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "agent output is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });

    // modprobe for every module, on two threads (the machine has two cores).
    let t_modprobe = Instant::now();
    let results: Arc<Mutex<HashMap<String, Modprobe>>> = Arc::default();
    let chunks: Vec<Vec<String>> = modules
        .chunks(modules.len().div_ceil(2))
        .map(<[String]>::to_vec)
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (results, root, kver) = (results.clone(), root.clone(), kver.clone());
            std::thread::spawn(move || {
                for m in chunk {
                    let r = modprobe_show_depends(&root, &kver, &m);
                    results.lock().unwrap().insert(m, r);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let modprobe_secs = t_modprobe.elapsed().as_secs_f64();
    let results = results.lock().unwrap();

    let mut mismatches = Vec::new();
    let configs = report["configs"].as_array().expect("configs array");
    assert_eq!(configs.len(), modules.len(), "one plan per config");
    let mut compared = 0;
    for c in configs {
        let name = c["name"].as_str().unwrap();
        let module = name.strip_prefix("m-").unwrap().to_string();
        let mp = &results[&module];
        if c["status"] != "planned" {
            mismatches.push(format!(
                "{module}: agent status {} ({})",
                c["status"], c["error"]
            ));
            continue;
        }
        compared += 1;
        let ours: Vec<(String, String)> = c["load"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["name"].as_str().unwrap().to_string(),
                    l["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let ours_set: HashSet<&(String, String)> = ours.iter().collect();
        let theirs_set: HashSet<&(String, String)> = mp.insmod.iter().collect();
        if ours_set != theirs_set {
            let only_ours: Vec<_> = ours_set.difference(&theirs_set).map(|(n, _)| n).collect();
            let only_theirs: Vec<_> = theirs_set.difference(&ours_set).map(|(n, _)| n).collect();
            mismatches.push(format!(
                "{module}: only agent {only_ours:?}, only modprobe {only_theirs:?}"
            ));
            continue;
        }
        let ours_builtin: HashSet<String> = c["builtin"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap().to_string())
            .collect();
        let theirs_builtin: HashSet<String> = mp.builtin.iter().cloned().collect();
        if ours_builtin != theirs_builtin {
            mismatches.push(format!(
                "{module}: builtin agent {ours_builtin:?}, modprobe {theirs_builtin:?}"
            ));
            continue;
        }
        // Order: everything modprobe puts before X (asked for X) is before X.
        let pos: HashMap<&str, usize> = ours
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect();
        for (x, _) in &ours {
            let Some(own) = results.get(x) else { continue };
            for (before, _) in own.insmod.iter().take_while(|(n, _)| n != x) {
                if pos
                    .get(before.as_str())
                    .is_some_and(|&b| b > pos[x.as_str()])
                {
                    mismatches.push(format!(
                        "{module}: agent loads {x} before its dependency {before}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "differential vs modprobe ({kver}): {} modules, {compared} plans compared, {} mismatches; agent {agent_secs:.1} s (one run), modprobe {modprobe_secs:.1} s, total {:.1} s",
        modules.len(),
        mismatches.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
