//! The output formats. Each is built from the same validated node config and
//! the same Ignition config, so they cannot disagree about what lands on a node.

pub mod butane;
pub mod disruption;
pub mod machineconfig;

use anyhow::{bail, Result};
use clap::ValueEnum;

/// What `kmm-day1 generate` writes (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A MachineConfig (YAML) for `oc create -f`.
    Machineconfig,
    /// A Butane config (`variant: openshift`).
    Butane,
    /// The plain Ignition config (JSON).
    Ignition,
    /// Only the node config TOML (`/etc/kmm-day1/<name>.toml`).
    Config,
    /// A `MachineConfiguration` patch so later changes need no reboot (OpenShift 4.17+).
    DisruptionPolicy,
}

/// The role label that selects a MachineConfigPool.
pub const ROLE_LABEL: &str = "machineconfiguration.openshift.io/role";

/// YAML text of any serialisable value.
pub fn yaml<T: serde::Serialize>(v: &T) -> String {
    serde_norway::to_string(v)
        .unwrap_or_else(|e| unreachable!("plain structs always serialise to YAML: {e}"))
}

/// YAML text of `full`, made from `light`: the same value with its long
/// `data:` URLs swapped for `elided`'s placeholders. libyaml's emitter
/// inspects a scalar byte by byte, and the agent's 1.5 MB URL was three
/// quarters of a run's instructions; such a URL (no spaces, no `: `, no `#`)
/// is always written as one plain scalar, so it can be put back as text.
/// Anything unexpected falls back to serialising `full`.
pub fn yaml_light<T: serde::Serialize>(full: &T, light: &T, elided: &Elided) -> String {
    elided.restore(yaml(light)).unwrap_or_else(|| yaml(full))
}

/// Long strings taken out of a value before YAML serialisation.
#[derive(Debug, Default)]
pub struct Elided(Vec<String>);

impl Elided {
    /// Below this a string costs the emitter little.
    const MIN: usize = 4096;

    /// `s`, or a placeholder for it when it is a long `data:` URL of
    /// characters that YAML leaves alone in a plain scalar.
    pub fn swap(&mut self, s: &str) -> String {
        let plain = s.starts_with("data:")
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'+' | b'/' | b'=' | b':' | b';' | b',' | b'%' | b'-' | b'.' | b'_'
                    )
            });
        if s.len() < Self::MIN || !plain {
            return s.to_string();
        }
        self.0.push(s.to_string());
        Self::placeholder(self.0.len() - 1)
    }

    fn placeholder(i: usize) -> String {
        format!("kmm-day1-elided-{i}")
    }

    /// Put the strings back: each placeholder must be a whole mapping value
    /// on its own line, exactly once.
    fn restore(&self, mut yaml: String) -> Option<String> {
        for (i, s) in self.0.iter().enumerate() {
            let at = format!(": {}\n", Self::placeholder(i));
            if yaml.matches(at.as_str()).count() != 1 {
                return None;
            }
            yaml = yaml.replacen(at.as_str(), &format!(": {s}\n"), 1);
        }
        Some(yaml)
    }
}

/// The pool's role: the value of the `machineconfiguration.openshift.io/role`
/// label, checked before it reaches the API server. Kubernetes would take
/// `Worker` as a label value, but no pool selects it: a MachineConfigPool's
/// name is a lowercase DNS name and its selector's role is that name
/// (`worker`, `master`, `infra`, …). So the check is the label value's syntax
/// with lowercase letters only. `what` names where the value came from.
pub fn check_pool(pool: &str, what: &str) -> Result<()> {
    let b = pool.as_bytes();
    let lower_alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 63
        && lower_alnum(&b[0])
        && lower_alnum(&b[b.len() - 1])
        && b.iter()
            .all(|c| lower_alnum(c) || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        let lower = pool.to_ascii_lowercase();
        let hint = if lower != pool && check_pool(&lower, what).is_ok() {
            format!("; MachineConfigPools select lowercase roles: use `{lower}`")
        } else {
            String::new()
        };
        bail!("{what} `{pool}` is not a pool role MachineConfigPools select (1-63 characters of [a-z0-9._-], starting and ending with a lowercase letter or digit, e.g. `worker`){hint}");
    }
    Ok(())
}

/// The MachineConfig's name: `--mc-name`, or `99-<pool>-kmm-day1-<name>`
/// (the `99-` prefix sorts it after the pool's base configs, as the MCO's
/// own user-config naming does). Must be a DNS-1123 subdomain.
pub fn mc_name(explicit: Option<&str>, pool: &str, name: &str) -> Result<String> {
    let n = match explicit {
        Some(n) => n.to_string(),
        None => format!("99-{pool}-kmm-day1-{name}"),
    };
    let b = n.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'));
    if !ok {
        let hint = if explicit.is_some() {
            ""
        } else {
            "; choose one with --mc-name"
        };
        bail!("MachineConfig name `{n}` is not a valid Kubernetes name (lowercase letters, digits, `-` and `.`, at most 253, starting and ending with a letter or digit){hint}");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, Clone)]
    struct Doc {
        files: Vec<(String, String)>,
        note: String,
    }

    #[test]
    fn light_yaml_is_the_full_yaml() {
        let b64: String = (0..20_000u32)
            .map(|i| {
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                        [(i.wrapping_mul(2_654_435_761) >> 26) as usize],
                )
            })
            .collect();
        let full = Doc {
            files: vec![
                ("/usr/local/bin/a".into(), format!("data:;base64,{b64}")),
                ("/etc/b".into(), format!("data:,{}", "x%20y".repeat(1000))),
                ("/etc/c".into(), "data:,short".into()),
                // Not plain-safe: stays in place.
                ("/etc/d".into(), format!("data:,{}", "a b".repeat(2000))),
            ],
            note: "kmm-day1-elided-0 in a sentence".into(),
        };
        let mut elided = Elided::default();
        let mut light = full.clone();
        for f in &mut light.files {
            f.1 = elided.swap(&f.1);
        }
        assert_eq!(elided.0.len(), 2, "the two long plain-safe URLs");
        assert_eq!(yaml_light(&full, &light, &elided), yaml(&full));
    }

    #[test]
    fn a_placeholder_that_is_not_unique_falls_back() {
        let mut elided = Elided::default();
        let long = format!("data:;base64,{}", "A".repeat(5000));
        let p = elided.swap(&long);
        let full = vec![long.clone(), "kmm-day1-elided-0".to_string()];
        let light = vec![p.clone(), p];
        // A map value would match; a sequence item does not: either way
        // the result must be the full value's YAML.
        assert_eq!(yaml_light(&full, &light, &elided), yaml(&full));
        let mut m = std::collections::BTreeMap::new();
        m.insert("a", long.clone());
        m.insert("b", "kmm-day1-elided-0".to_string());
        let mut lm = m.clone();
        lm.insert("a", "kmm-day1-elided-0".to_string());
        assert_eq!(yaml_light(&m, &lm, &elided), yaml(&m));
    }

    #[test]
    fn names_and_pools() {
        assert_eq!(
            mc_name(None, "worker", "sfc").unwrap(),
            "99-worker-kmm-day1-sfc"
        );
        let e = mc_name(None, "worker", "My_Driver")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--mc-name"), "{e}");
        assert!(mc_name(Some("Bad"), "worker", "x").is_err());
        for ok in ["worker", "infra-gpu", "gpu.a_1", "0"] {
            assert!(check_pool(ok, "--pool").is_ok(), "{ok}");
        }
        for bad in ["-x", "", "x-", "Worker", "GPU", "a/b", &"a".repeat(64)] {
            assert!(check_pool(bad, "--pool").is_err(), "{bad}");
        }
        let e = check_pool("Worker", "--pool").unwrap_err().to_string();
        assert!(
            e.starts_with("--pool `Worker` is not") && e.ends_with("use `worker`"),
            "{e}"
        );
        let e = check_pool("a b", "--pool").unwrap_err().to_string();
        assert!(!e.contains("use `"), "no hint that is itself invalid: {e}");
    }
}
