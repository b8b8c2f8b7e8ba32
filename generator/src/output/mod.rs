//! The output formats. Each is built from the same validated node config and
//! the same Ignition config, so they cannot disagree about what lands on a node.

pub mod butane;
pub mod disruption;
pub mod machineconfig;

use anyhow::{bail, Result};

/// The role label that selects a MachineConfigPool.
pub const ROLE_LABEL: &str = "machineconfiguration.openshift.io/role";

/// YAML text of any serialisable value.
pub fn yaml<T: serde::Serialize>(v: &T) -> String {
    serde_norway::to_string(v)
        .unwrap_or_else(|e| unreachable!("plain structs always serialise to YAML: {e}"))
}

/// A Kubernetes label value (the pool's role), checked before it reaches the
/// API server, which would reject it with a less direct message.
pub fn check_pool(pool: &str) -> Result<()> {
    let b = pool.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        bail!("--pool `{pool}` is not a valid pool role label (1-63 characters of [A-Za-z0-9._-], starting and ending with a letter or digit)");
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
        assert!(check_pool("worker").is_ok());
        assert!(check_pool("infra-gpu").is_ok());
        assert!(check_pool("-x").is_err());
        assert!(check_pool("").is_err());
    }
}
