//! The generator as a kubectl/oc plugin: a real `kubectl` finds
//! `kubectl-kmm_day1` (a symlink to this binary) on PATH and runs it, and
//! `kubectl kmm-day1 machineconfig …` writes the same bytes as
//! `kmm-day1 generate …`. No cluster: plugins run locally.
//! (`tests/setup.d/15-kubectl.sh` installs kubectl when it is missing.)

#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;
use std::process::Command;

use util::{root, FAKE_AGENT};

/// `kubectl <args>` from the workspace root, with only `dir` prepended to
/// PATH and a HOME/KUBECONFIG of its own (no user config, no cluster).
fn kubectl(dir: &Path, args: &[&str]) -> util::Out {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    let out = Command::new("kubectl")
        .args(args)
        .env("PATH", std::env::join_paths(paths).unwrap())
        .env("HOME", dir)
        .env("KUBECONFIG", dir.join("no-kubeconfig"))
        .current_dir(root())
        .output()
        .expect("run kubectl");
    util::Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn kubectl_discovers_and_runs_the_plugin() {
    if !kmm_day1_tests::require_tool("kubectl") {
        return;
    }
    let dir = util::scratch("kubectl-plugin");
    let bin = Path::new(env!("CARGO_BIN_EXE_kmm-day1"));
    std::os::unix::fs::symlink(bin, dir.join("kubectl-kmm_day1")).unwrap();

    let list = kubectl(&dir, &["plugin", "list"]);
    let listed = dir.join("kubectl-kmm_day1");
    assert!(
        list.stdout_str()
            .lines()
            .any(|l| l.trim() == listed.to_str().unwrap()),
        "kubectl plugin list does not show {}: {}{}",
        listed.display(),
        list.stdout_str(),
        list.stderr
    );
    // kubectl warns about plugins it cannot run (not executable, bad
    // name); one installed elsewhere on PATH would be warned about as
    // overshadowed, which is not ours to fail on.
    assert!(
        !list
            .stderr
            .lines()
            .any(|l| l.contains("warning") && l.contains(dir.to_str().unwrap())),
        "kubectl warns about the plugin: {}",
        list.stderr
    );

    // `kubectl kmm-day1 machineconfig …` is `kmm-day1 generate …`, byte for byte.
    for input in [
        &["--from-module", "examples/bootmoduleconfig.yaml"][..],
        &["--from-module", "examples/multi-document.yaml"][..],
        &["--config", "examples/sfc.toml", "--pool", "worker"][..],
    ] {
        let mut args = vec!["kmm-day1", "machineconfig", "--agent", FAKE_AGENT];
        args.extend_from_slice(input);
        let via_kubectl = kubectl(&dir, &args);
        let mut direct = vec!["generate", "--agent", FAKE_AGENT];
        direct.extend_from_slice(input);
        let direct = util::kmm_day1(&direct);
        assert_eq!(via_kubectl.ok(), direct.ok(), "{input:?}");
        assert_eq!(via_kubectl.stderr, direct.stderr, "{input:?}");
    }

    // Help and usage errors speak of the command the user typed.
    let help = kubectl(&dir, &["kmm-day1", "--help"]);
    assert!(
        help.ok().contains("Usage: kubectl kmm-day1 <COMMAND>"),
        "{}",
        help.stdout_str()
    );
    // kubectl passes the plugin's exit code and its one-line error through.
    let bad = kubectl(
        &dir,
        &[
            "kmm-day1",
            "machineconfig",
            "--from-module",
            "/nonexistent.yaml",
        ],
    );
    assert!(
        bad.one_line_error()
            .contains("cannot read --from-module /nonexistent.yaml"),
        "{}",
        bad.stderr
    );
}

/// oc runs plugins with kubectl's own plugin handler (there is no `oc`
/// here to run); what the binary itself does with that name is checked.
#[test]
fn oc_plugin_name_shows_as_oc_kmm_day1() {
    let dir = util::scratch("oc-plugin");
    let bin = Path::new(env!("CARGO_BIN_EXE_kmm-day1"));
    let link = dir.join("oc-kmm_day1");
    std::os::unix::fs::symlink(bin, &link).unwrap();
    let out = Command::new(&link).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(help.contains("Usage: oc kmm-day1 <COMMAND>"), "{help}");
    let out = Command::new(&link)
        .args([
            "machineconfig",
            "--config",
            "examples/sfc.toml",
            "--agent",
            FAKE_AGENT,
            "--pool",
            "worker",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let direct = util::generate_sfc(&["--pool", "worker"]);
    assert_eq!(out.stdout, direct.stdout);
}
