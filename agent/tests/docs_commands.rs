//! Every `kmm-day1-agent …` command line in a ```sh block of the docs is
//! accepted by the agent's parser: the same arguments plus `--help` must
//! print help and exit 0 (an unknown or misplaced option fails first). The
//! commands themselves act on a node's store and kernel, so they are parsed,
//! not run.

// Integration-test helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use kmm_day1_tests::docs::sh_commands;
use kmm_day1_tests::workspace_root;

#[test]
fn every_documented_agent_command_line_parses() {
    let root = workspace_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root.join("README.md"));
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, args) in sh_commands(&text, "kmm-day1-agent") {
            checked += 1;
            let out = Command::new(env!("CARGO_BIN_EXE_kmm-day1-agent"))
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            if !out.status.success() || out.stdout.is_empty() {
                failures.push(format!(
                    "{}: `{line}`: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    assert!(
        checked >= 5,
        "only {checked} documented agent command lines"
    );
    assert!(
        failures.is_empty(),
        "documented agent commands the parser refuses:\n{}",
        failures.join("\n")
    );
}

#[test]
fn version_names_the_revision_and_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_kmm-day1-agent"))
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{v}");
    assert!(v.starts_with("kmm-day1-agent 0."), "{v}");
    let arch = std::env::consts::ARCH;
    assert!(
        v.contains("(git ") && v.contains(&format!("{arch}-unknown-linux-")),
        "{v}"
    );
}
