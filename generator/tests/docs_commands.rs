//! Every `kmm-day1 …` command line in a ```sh block of the docs, and every
//! example of `kmm-day1 generate --help`, runs for real (offline, with the
//! golden tests' stand-in agent); the completions and man pages the hidden
//! subcommands write are valid for bash, zsh, fish and groff, and
//! docs/install.md lists every man page.

// Integration-test helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use std::path::PathBuf;
use std::process::Command;

use kmm_day1_tests::docs::sh_commands;
use kmm_day1_tests::require_tool;
use util::{kmm_day1, root, scratch, FAKE_AGENT};

/// docs/*.md and README.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.push(root().join("README.md"));
    files
}

/// Runs one documented command line; `Err` says why it failed.
fn run_documented(args: &[String], out_dir: &std::path::Path, n: usize) -> Result<(), String> {
    let mut args: Vec<String> = args.to_vec();
    // Output files go to a scratch directory, not the checkout.
    let mut i = 0;
    while i < args.len() {
        if (args[i] == "-o" || args[i] == "--output") && i + 1 < args.len() {
            args[i + 1] = out_dir.join(format!("out-{n}-{i}")).display().to_string();
        }
        i += 1;
    }
    let generates = matches!(
        args.first().map(String::as_str),
        Some("generate" | "machineconfig" | "mc")
    );
    if generates && !args.iter().any(|a| a == "--agent") {
        args.extend(["--agent".to_string(), FAKE_AGENT.to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kmm_day1(&refs);
    if out.code != 0 {
        return Err(format!("exit {}: {}", out.code, out.stderr.trim()));
    }
    Ok(())
}

#[test]
fn every_documented_command_line_runs() {
    let dir = scratch("docs-commands");
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, args) in sh_commands(&text, "kmm-day1") {
            ran += 1;
            if let Err(e) = run_documented(&args, &dir, ran) {
                failures.push(format!("{}: `{line}`: {e}", file.display()));
            }
        }
    }
    assert!(
        ran >= 10,
        "only {ran} documented kmm-day1 command lines found"
    );
    assert!(
        failures.is_empty(),
        "documented commands that fail:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_help_example_runs() {
    let dir = scratch("help-examples");
    let mut ran = 0;
    for help in [&["--help"][..], &["generate", "--help"]] {
        let out = kmm_day1(help);
        let text = out.ok().to_string();
        let examples = text
            .split("Examples:")
            .nth(1)
            .unwrap_or_else(|| panic!("no Examples in {help:?}:\n{text}"));
        for line in examples.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("kmm-day1 ") else {
                continue;
            };
            // Text after the command, e.g. "every input, output…", is prose.
            let rest = rest.split("   ").next().unwrap();
            let block = format!("```sh\nkmm-day1 {rest}\n```\n");
            for (_, args) in sh_commands(&block, "kmm-day1") {
                ran += 1;
                run_documented(&args, &dir, ran)
                    .unwrap_or_else(|e| panic!("`{line}` from {help:?}: {e}"));
            }
        }
    }
    assert!(ran >= 5, "only {ran} help examples");
}

#[test]
fn version_names_the_revision_and_target() {
    let v = kmm_day1(&["--version"]).ok().to_string();
    assert!(v.starts_with("kmm-day1 0."), "{v}");
    assert!(v.contains("(git ") && v.contains("-linux-"), "{v}");
}

#[test]
fn completions_parse_in_their_shells() {
    for (shell, check) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = kmm_day1(&["completions", shell]);
        let script = out.ok().to_string();
        assert!(
            script.contains("generate") && script.contains("--from-module"),
            "{shell}"
        );
        if !require_tool(check) {
            continue;
        }
        let dir = scratch(&format!("completion-{shell}"));
        let path = dir.join("script");
        std::fs::write(&path, &script).unwrap();
        let out = Command::new(check).arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{shell} -n: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // bash offers the subcommands and generate's options.
    if require_tool("bash") {
        let script = kmm_day1(&["completions", "bash"]).ok().to_string();
        // The function `complete -F` registers for kmm-day1.
        let func = script
            .split("complete -F ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("a `complete -F` line");
        let prog = format!(
            "{script}\nCOMP_WORDS=(kmm-day1 generate --from); COMP_CWORD=2; COMP_LINE='kmm-day1 generate --from'; COMP_POINT=${{#COMP_LINE}}; \
             {func} kmm-day1 --from generate; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = Command::new("bash").args(["-c", &prog]).output().unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            got.lines().any(|l| l == "--from-module"),
            "{got}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = scratch("manpages");
    let out = kmm_day1(&["manpages", dir.to_str().unwrap()]);
    out.ok();
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    // kmm-day1.1 and one page per subcommand `kmm-day1 --help` lists.
    let help = kmm_day1(&["--help"]).ok().to_string();
    let commands = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let mut want: Vec<String> = commands
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(|c| format!("kmm-day1-{c}.1"))
        .collect();
    want.push("kmm-day1.1".to_string());
    want.sort();
    assert!(want.contains(&"kmm-day1-generate.1".to_string()), "{help}");
    assert_eq!(pages, want);
    // docs/install.md lists what `make install` puts in man1: every page.
    let install = std::fs::read_to_string(root().join("docs/install.md")).unwrap();
    for page in &pages {
        assert!(
            install.contains(&format!("`{page}`")) || install.contains(&format!("/{page}`")),
            "docs/install.md does not list the man page {page}"
        );
    }
    let generate = std::fs::read_to_string(dir.join("kmm-day1-generate.1")).unwrap();
    assert!(
        generate.contains("from\\-module") && generate.contains("Examples"),
        "{generate}"
    );
    if require_tool("groff") {
        for page in &pages {
            // -k: preconv, as man(1) runs it (the pages hold UTF-8, e.g. `…`).
            let out = Command::new("groff")
                .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
                .arg(dir.join(page))
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{page}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
