//! The real Ignition (Debian's `ignition` package) applies a generated config
//! with the real static agent to a scratch root: everything lands where the
//! node expects it, byte for byte, and the agent runs.

#![allow(clippy::unwrap_used)]

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kmm_day1_config::{units, NodeConfig, AGENT_PATH};
use util::{kmm_day1, root, CASES};

/// Not on PATH: the dracut module's binary (see shared/vm-notes.md).
const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// The generator's own embedded x86_64 agent when it was built with
/// KMM_DAY1_AGENT_X86_64 (as `make test` does), else `--agent` with it.
fn agent_under_test() -> Option<(Vec<String>, PathBuf)> {
    if let Some(p) = option_env!("KMM_DAY1_EMBEDDED_X86_64") {
        return Some((Vec::new(), PathBuf::from(p)));
    }
    let p = kmm_day1_tests::static_agent("x86_64")?;
    Some((vec!["--agent".into(), p.display().to_string()], p))
}

fn have_ignition() -> bool {
    if Path::new(IGNITION).is_file() {
        return true;
    }
    assert!(
        !kmm_day1_tests::full_suite(),
        "{IGNITION} is missing: tests/setup.d/10-ignition.sh installs Debian's `ignition`"
    );
    eprintln!("skipping: {IGNITION} is not installed");
    false
}

/// Ignition's fetch-offline and files stages, as in the initramfs, on `root`.
fn apply(config: &Path, work: &Path) -> PathBuf {
    let r = work.join("root");
    let cache = work.join("cache");
    let bin = work.join("bin");
    for d in [&r.join("etc/selinux"), &cache, &bin] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The files stage relabels for SELinux: it needs a policy type and a
    // `setfiles`, which a stub that swallows the file list satisfies.
    std::fs::write(
        r.join("etc/selinux/config"),
        "SELINUX=disabled\nSELINUXTYPE=targeted\n",
    )
    .unwrap();
    let stub = bin.join("setfiles");
    std::fs::write(&stub, "#!/bin/sh\ncat >/dev/null\n").unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for stage in ["fetch-offline", "files"] {
        let out = Command::new(IGNITION)
            .args(["-platform", "file", "-stage", stage, "-root"])
            .arg(&r)
            .arg("-log-to-stdout")
            .arg("-config-cache")
            .arg(cache.join("ign.json"))
            .arg("-state-file")
            .arg(cache.join("state"))
            .arg("-neednet")
            .arg(cache.join("neednet"))
            .env("IGNITION_CONFIG_FILE", config)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ignition -stage {stage} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    r
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn real_ignition_installs_agent_config_and_units() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !is_root {
        assert!(
            !kmm_day1_tests::full_suite(),
            "Ignition's files stage needs root (chown)"
        );
        eprintln!("skipping: Ignition's files stage needs root");
        return;
    }
    if !have_ignition() {
        return;
    }
    let Some((agent_args, agent_file)) = agent_under_test() else {
        return;
    };
    let agent_bytes = util::read(&agent_file);
    for case in [&CASES[0], &CASES[2]] {
        let work = util::scratch(&format!("ignition-apply-{}", case.name));
        let ign = work.join("config.ign");
        let mut args: Vec<String> = vec!["generate".into()];
        args.extend(case.args.iter().map(|s| s.to_string()));
        args.extend([
            "--format".into(),
            "ignition".into(),
            "-o".into(),
            ign.display().to_string(),
        ]);
        args.extend(agent_args.iter().cloned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        kmm_day1(&argv).ok();

        let r = apply(&ign, &work);

        let agent = r.join(AGENT_PATH.trim_start_matches('/'));
        assert_eq!(mode(&agent), 0o755);
        assert!(
            util::read(&agent) == agent_bytes,
            "the installed agent differs from {}",
            agent_file.display()
        );
        let v = Command::new(&agent).arg("--version").output().unwrap();
        assert!(v.status.success(), "installed agent does not run: {v:?}");
        assert!(
            String::from_utf8_lossy(&v.stdout).starts_with("kmm-day1-agent"),
            "{v:?}"
        );

        // The config reads back through the agent's own loader, equal to the input.
        let cfg_out = kmm_day1(&[&["generate"], case.args, &["--format", "config"]].concat());
        let name = match case.name {
            "module-cr" => "mlx5-oot",
            n => n,
        };
        let want = NodeConfig::parse(Path::new(&format!("{name}.toml")), cfg_out.ok()).unwrap();
        if case.example.ends_with(".toml") {
            assert_eq!(want, NodeConfig::load(&root().join(case.example)).unwrap());
        }
        let installed = r.join(format!("etc/kmm-day1/{name}.toml"));
        assert_eq!(mode(&installed), 0o644);
        assert_eq!(NodeConfig::load(&installed).unwrap(), want);
        let loaded = kmm_day1_config::load_dir(&r.join("etc/kmm-day1")).unwrap();
        assert_eq!(loaded, vec![(name.to_string(), want)]);

        let preset =
            std::fs::read_to_string(r.join("etc/systemd/system-preset/20-ignition.preset"))
                .unwrap();
        for u in units::ALL {
            let installed = util::read(r.join("etc/systemd/system").join(u.name));
            assert!(
                installed == util::read(root().join("systemd").join(u.name)),
                "{} differs from systemd/",
                u.name
            );
            assert!(
                preset.lines().any(|l| l == format!("enable {}", u.name)),
                "{} not enabled: {preset}",
                u.name
            );
        }
    }
}
