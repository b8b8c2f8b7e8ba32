//! Kernel mappings that can never apply, found before they reach a node.
//!
//! KMM's rule is "first match wins", and a node's `uname -r` has no spaces.
//! So a literal with surrounding whitespace, a second copy of a literal or a
//! regexp, and anything after a catch-all regexp are dead entries: the kernel
//! they were written for gets another mapping's image, or none. Those are
//! errors. A literal for another architecture than `--arch` is only a
//! warning: one Module CR often lists every architecture's kernels, and
//! each pool's MachineConfig carries all of them.

use anyhow::{bail, Result};
use kmm_day1_config::{KernelMapping, NodeConfig};

use crate::agent::Arch;

/// The problems of `config`'s mappings: `Err` for a dead entry, else the
/// warnings to print.
pub fn check(config: &NodeConfig, arch: Arch) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut catch_all: Option<usize> = None;
    for (i, m) in config.kernel_mappings.iter().enumerate() {
        let key = format!("kernel_mappings[{i}]");
        if let Some(first) = catch_all {
            bail!(
                "{key} ({}) can never apply: {}, first match wins, and `{}` matches every kernel release; move the catch-all last or remove this mapping",
                describe(m),
                describe_at(config, first),
                config.kernel_mappings[first].regexp.as_deref().unwrap_or_default()
            );
        }
        if let Some(first) = config.kernel_mappings[..i]
            .iter()
            .position(|p| same_rule(p, m))
        {
            bail!(
                "{key} ({}) can never apply: {} has the same rule and first match wins; remove one",
                describe(m),
                describe_at(config, first)
            );
        }
        if let Some(lit) = &m.literal {
            if lit.trim() != lit {
                bail!(
                    "{key}.literal `{lit}` has leading or trailing whitespace, so no kernel release (`uname -r`) equals it; write `{}`",
                    lit.trim()
                );
            }
            if let Some(other) = release_arch(lit).filter(|a| *a != arch.as_str()) {
                warnings.push(format!(
                    "{key}.literal `{lit}` is an {other} kernel, but --arch is {}: no node of this MachineConfig runs it (fine if the same input also serves an {other} pool)",
                    arch.as_str()
                ));
            }
        }
        if m.regexp.as_deref().is_some_and(is_catch_all) {
            catch_all = Some(i);
        }
    }
    Ok(warnings)
}

fn same_rule(a: &KernelMapping, b: &KernelMapping) -> bool {
    (a.literal.is_some() && a.literal == b.literal) || (a.regexp.is_some() && a.regexp == b.regexp)
}

/// `literal `X`` or `regexp `X``, for messages.
pub fn describe(m: &KernelMapping) -> String {
    match (&m.literal, &m.regexp) {
        (Some(l), _) => format!("literal `{l}`"),
        (None, Some(r)) => format!("regexp `{r}`"),
        (None, None) => "no rule".into(),
    }
}

fn describe_at(config: &NodeConfig, i: usize) -> String {
    format!(
        "kernel_mappings[{i}] ({}) comes first",
        describe(&config.kernel_mappings[i])
    )
}

/// A regexp that matches every string: after its anchors, nothing but
/// "any characters". (Only the plain spellings; anything cleverer is
/// not worth guessing at.)
fn is_catch_all(re: &str) -> bool {
    let core = re.strip_prefix('^').unwrap_or(re);
    let core = core.strip_suffix('$').unwrap_or(core);
    let core = core
        .strip_prefix('(')
        .and_then(|c| c.strip_suffix(')'))
        .unwrap_or(core);
    matches!(core, "" | ".*" | ".+" | ".*?" | ".+?")
}

/// The architecture a kernel release names: RHEL's `.x86_64` / `.aarch64`
/// (also before a `+rt` / `+64k` flavour), Debian's `-amd64` / `-arm64`.
fn release_arch(release: &str) -> Option<&'static str> {
    release.split(['.', '-', '+']).find_map(|part| match part {
        "x86_64" | "amd64" => Some("x86_64"),
        "aarch64" | "arm64" => Some("aarch64"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mappings: &[(&str, &str)]) -> NodeConfig {
        let mut c = NodeConfig::new("quay.io/a/b:1", vec!["sfc".into()]);
        for (kind, rule) in mappings {
            let mut m = KernelMapping::default();
            match *kind {
                "literal" => m.literal = Some(rule.to_string()),
                _ => m.regexp = Some(rule.to_string()),
            }
            c.kernel_mappings.push(m);
        }
        c
    }

    fn err(mappings: &[(&str, &str)]) -> String {
        check(&config(mappings), Arch::X86_64)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn dead_mappings_are_errors() {
        let e = err(&[("literal", "5.14.0-427.13.1.el9_4.x86_64 ")]);
        assert!(e.starts_with("kernel_mappings[0].literal `5.14.0-427.13.1.el9_4.x86_64 ` has leading or trailing whitespace") && e.ends_with("write `5.14.0-427.13.1.el9_4.x86_64`"), "{e}");
        let e = err(&[
            ("literal", "6.1.0-18-amd64"),
            ("regexp", "el9"),
            ("literal", "6.1.0-18-amd64"),
        ]);
        assert!(e.starts_with("kernel_mappings[2] (literal `6.1.0-18-amd64`) can never apply: kernel_mappings[0] (literal `6.1.0-18-amd64`) comes first"), "{e}");
        let e = err(&[("regexp", "el9"), ("regexp", "el9")]);
        assert!(
            e.starts_with("kernel_mappings[1] (regexp `el9`) can never apply"),
            "{e}"
        );
        for all in ["^.+$", ".*", "^.*$", "(.*)", "^(.+)$", ""] {
            let e = err(&[
                ("regexp", "el9"),
                ("regexp", all),
                ("literal", "6.1.0-18-amd64"),
            ]);
            assert!(e.starts_with("kernel_mappings[2] (literal `6.1.0-18-amd64`) can never apply: kernel_mappings[1]"), "{all}: {e}");
        }
    }

    #[test]
    fn live_mappings_pass_and_other_arches_warn() {
        let ok = config(&[
            ("literal", "5.14.0-427.13.1.el9_4.x86_64"),
            ("regexp", "^.+\\.el9_4\\.x86_64$"),
            ("regexp", ".+el9"),
            ("regexp", "^.+$"),
        ]);
        assert_eq!(check(&ok, Arch::X86_64).unwrap(), Vec::<String>::new());
        let other = config(&[
            ("literal", "5.14.0-427.13.1.el9_4.aarch64+64k"),
            ("literal", "6.1.0-18-arm64"),
            ("literal", "6.1.0-18-amd64"),
        ]);
        let w = check(&other, Arch::X86_64).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("kernel_mappings[0].literal `5.14.0-427.13.1.el9_4.aarch64+64k` is an aarch64 kernel, but --arch is x86_64"), "{w:?}");
        let w = check(&other, Arch::Aarch64).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("`6.1.0-18-amd64` is an x86_64 kernel"),
            "{w:?}"
        );
        assert_eq!(
            release_arch("5.14.0-427.13.1.el9_4.x86_64+rt"),
            Some("x86_64")
        );
        assert_eq!(release_arch("6.8.0-rc1"), None);
    }
}
