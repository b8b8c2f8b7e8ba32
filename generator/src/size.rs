//! How big a MachineConfig may be.
//!
//! The MCO merges every MachineConfig of a pool into one *rendered* config
//! and stores it in etcd, whose request limit is 1.5 MiB; a pool's base
//! configs already take ~150-300 KB. So ours is refused above 1.25 MiB and
//! warned about above 768 KiB. Independently, client-side `oc apply` stores
//! the whole object in an annotation limited to 256 KiB.

use anyhow::{bail, Result};

pub const WARN_ABOVE: usize = 768 * 1024;
pub const REFUSE_ABOVE: usize = 1280 * 1024;
pub const CLIENT_APPLY_LIMIT: usize = 256 * 1024;

fn kib(n: usize) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

/// Refuse an oversize MachineConfig; otherwise the notes to print.
/// `measured`: `--rendered` has already said whether the pool fits, which
/// answers the 768 KiB warning's question (repeating it would cry wolf).
pub fn check(mc_bytes: usize, pool: &str, measured: bool) -> Result<Vec<String>> {
    if mc_bytes > REFUSE_ABOVE {
        bail!(
            "the MachineConfig would be {mc_bytes} bytes ({}), above the 1.25 MiB this tool allows: with the pool's other configs the rendered MachineConfig would exceed etcd's 1.5 MiB request limit; use a smaller agent (--agent)",
            kib(mc_bytes)
        );
    }
    let mut notes = Vec::new();
    if mc_bytes > WARN_ABOVE && !measured {
        notes.push(format!(
            "warning: the MachineConfig is {} (above 768 KiB); the pool's rendered MachineConfig must stay below 1.5 MiB: check it with `oc get mc rendered-{pool}-<hash> -o json | kmm-day1 generate … --rendered -` (`oc get mc -o name | grep rendered-{pool}-` finds the name)",
            kib(mc_bytes)
        ));
    }
    if mc_bytes > CLIENT_APPLY_LIMIT {
        notes.push(
            "note: above 256 KiB client-side `oc apply` fails (last-applied annotation too large): use `oc create -f` or `oc apply --server-side -f`"
                .to_string(),
        );
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert!(check(200 * 1024, "worker", false).unwrap().is_empty());
        let n = check(300 * 1024, "worker", false).unwrap();
        assert_eq!(n.len(), 1);
        assert!(n[0].contains("--server-side"));
        let n = check(800 * 1024, "worker", false).unwrap();
        assert_eq!(n.len(), 2);
        assert!(n[0].contains("rendered-worker-"), "{}", n[0]);
        // Measured with --rendered: only the oc apply note is left.
        let n = check(800 * 1024, "worker", true).unwrap();
        assert_eq!(n.len(), 1);
        assert!(n[0].contains("--server-side"));
        assert!(check(REFUSE_ABOVE, "w", false).is_ok());
        for measured in [false, true] {
            let e = check(REFUSE_ABOVE + 1, "w", measured)
                .unwrap_err()
                .to_string();
            assert!(e.contains("1.25 MiB"), "{e}");
        }
    }
}
