//! The generated files against the agent's real parser source and real
//! shells and groff.

use std::collections::BTreeSet;
use std::process::Command;

use crate::help::Agent;
use crate::{render, CLI_SOURCE};

/// Options the parser accepts on purpose without listing them in `--help`.
/// `--host-modules-root` and `--sys-root` stand in for the host's
/// /lib/modules and /sys in tests.
const HIDDEN: [&str; 2] = ["host-modules-root", "sys-root"];

fn agent() -> Agent {
    Agent::parse(CLI_SOURCE).unwrap()
}

/// Every `Long("…")` the lexopt parser matches, outside its tests.
fn parser_longs() -> BTreeSet<String> {
    let code = CLI_SOURCE.split("#[cfg(test)]").next().unwrap();
    code.split("Long(\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn help_lists_exactly_the_options_the_parser_accepts() {
    let a = agent();
    let names: Vec<&str> = a.commands.iter().map(|c| c.name.as_str()).collect();
    for want in ["pull", "replace", "status"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let mut listed = BTreeSet::new();
    for o in a.global.iter().chain(&a.common) {
        listed.insert(o.long.clone());
    }
    for c in &a.commands {
        assert!(
            !c.description.is_empty() && !c.summary.is_empty(),
            "{}",
            c.name
        );
        for o in &c.options {
            listed.insert(o.long.clone());
        }
    }
    let mut accepted = parser_longs();
    for h in HIDDEN {
        assert!(
            accepted.remove(h),
            "HIDDEN names `--{h}`, which the parser no longer accepts"
        );
    }
    assert_eq!(
        listed, accepted,
        "agent/src/cli.rs: the help texts and the parser disagree (left: in help, right: parsed)"
    );
    let store = a.common.iter().find(|o| o.long == "store").unwrap();
    assert_eq!(store.value.as_deref(), Some("DIR"));
    assert!(store.help.contains("/var/lib/kmm-day1"), "{store:?}");
    // A continuation line joins its option's text.
    let pull = &a.commands[0];
    let oci = pull
        .options
        .iter()
        .find(|o| o.long == "oci-layout")
        .unwrap();
    assert!(oci.help.contains("instead of the registry"), "{oci:?}");
}

#[test]
fn man_page_renders_without_warnings_and_names_every_option() {
    let a = agent();
    let page = render::man(&a);
    for c in &a.commands {
        for o in a.options_of(c) {
            assert!(
                page.contains(&format!("\\-\\-{}", o.long.replace('-', "\\-"))),
                "--{}",
                o.long
            );
        }
    }
    if !kmm_day1_tests::require_tool("groff") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("kmm-day1-docgen-{}", std::process::id()));
    crate::run(&dir).unwrap();
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(dir.join("man8/kmm-day1-agent.8"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("groff")
        .args(["-man", "-Tutf8", "-rLL=300n", "-P", "-cbou"])
        .arg(dir.join("man8/kmm-day1-agent.8"))
        .output()
        .unwrap();
    // Justification pads with spaces; compare words.
    let text = String::from_utf8_lossy(&text.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains("--kernel-release REL"), "{text}");
    assert!(
        text.contains("kmm-day1-agent - swap in-tree kernel modules"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs the bash completion function as bash would for `words`.
fn bash_complete(script: &str, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "{script}\nCOMP_WORDS=({}); COMP_CWORD={}; _kmm_day1_agent; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1
    );
    kmm_day1_tests::run(Command::new("bash").args(["-c", &prog]))
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completion_offers_commands_then_their_options() {
    let script = render::bash(&agent());
    assert_eq!(
        bash_complete(&script, &["kmm-day1-agent", "re"]),
        ["replace"]
    );
    assert_eq!(
        bash_complete(&script, &["kmm-day1-agent", "pull", "--no"]),
        ["--no-reboot"]
    );
    let replace = bash_complete(&script, &["kmm-day1-agent", "replace", "--"]);
    assert!(
        replace.contains(&"--dry-run".to_string()) && replace.contains(&"--store".to_string()),
        "{replace:?}"
    );
    assert!(!replace.contains(&"--no-reboot".to_string()), "{replace:?}");
}

#[test]
fn zsh_and_fish_completions_parse() {
    let a = agent();
    for (shell, script, ext) in [
        ("zsh", render::zsh(&a), "zsh"),
        ("fish", render::fish(&a), "fish"),
    ] {
        if !kmm_day1_tests::require_tool(shell) {
            continue;
        }
        let path =
            std::env::temp_dir().join(format!("kmm-day1-agent-{}.{ext}", std::process::id()));
        std::fs::write(&path, &script).unwrap();
        let out = Command::new(shell).arg("-n").arg(&path).output().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(
            out.status.success(),
            "{shell} -n: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
