//! The hardware gate (`[replace] require_device`, docs/config.md): swap a
//! config's modules only on a node with a device one of them drives.
//!
//! A device's `modalias` (`/sys/bus/*/devices/*/modalias`, e.g.
//! `pci:v00001924d00000803sv…`) is what udev hands to `modprobe`, and kmod
//! matches it against each module's `alias=` patterns with fnmatch: the
//! same rule here, on the out-of-tree modules' own `.modinfo`, so a node
//! swaps exactly when kmod would have found the out-of-tree driver for one
//! of its devices.

use std::path::Path;

use anyhow::Result;
use kmm_day1_config::NodeConfig;

use crate::modules::{fnmatch, Tree};

/// What the gate found for one config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// No configured module has a device alias (only `rtnl-link-…`,
    /// `fs-…`, … or none): nothing to match.
    NoAliases,
    /// This device matches this module's alias.
    Matched {
        module: String,
        alias: String,
        device: String,
    },
    /// `aliases` device aliases, none matching a device of this node.
    NoDevice { aliases: usize, example: String },
}

impl Gate {
    /// Whether the swap goes ahead under `require` (`require_device`;
    /// unset: required when there are device aliases).
    pub fn allows(&self, require: Option<bool>) -> bool {
        match (self, require) {
            (_, Some(false)) => true,
            (Gate::Matched { .. }, _) => true,
            (Gate::NoAliases, None) => true,
            (Gate::NoAliases, Some(true)) | (Gate::NoDevice { .. }, _) => false,
        }
    }

    /// Why the swap does not happen, for the journal and `status`.
    pub fn refusal(&self, require: Option<bool>) -> String {
        match self {
            Gate::NoDevice { aliases, example } => format!(
                "no device on this node matches the modules' {aliases} device alias{} (e.g. `{example}`): not swapping, the in-tree driver stays ({})",
                if *aliases == 1 { "" } else { "es" },
                if require.is_some() {
                    "`[replace] require_device = true`"
                } else {
                    "set `[replace] require_device = false` to swap on every node"
                }
            ),
            _ => "`[replace] require_device = true`, but no configured module has a device alias to match: not swapping, the in-tree driver stays".into(),
        }
    }
}

/// A bus alias as device tables write them (`pci:…`, `usb:…`, `acpi*:…`,
/// `of:…`, `virtio:…`): a name, then `:`. kmod's other aliases name no
/// device (`devname:…`, `char-major-…`, `fs-…`, `net-pf-…`, `rtnl-link-…`).
pub fn is_device_alias(alias: &str) -> bool {
    match alias.split_once(':') {
        Some((bus, _)) => {
            bus != "devname"
                && !bus.is_empty()
                && bus
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*'))
        }
        None => false,
    }
}

/// Match the configured modules' device aliases, `(module, aliases)`,
/// against the node's device modaliases.
pub fn gate(modules: &[(String, Vec<String>)], devices: &[String]) -> Gate {
    let mut count = 0;
    let mut example = None;
    for (module, aliases) in modules {
        for alias in aliases.iter().filter(|a| is_device_alias(a)) {
            count += 1;
            example.get_or_insert_with(|| alias.clone());
            if let Some(d) = devices.iter().find(|d| fnmatch(alias, d)) {
                return Gate::Matched {
                    module: module.clone(),
                    alias: alias.clone(),
                    device: d.clone(),
                };
            }
        }
    }
    match example {
        Some(example) => Gate::NoDevice {
            aliases: count,
            example,
        },
        None => Gate::NoAliases,
    }
}

/// For `pull` and `status`: why the stored tree of `cfg` for `kver` would
/// not be swapped in on this node (`None`: it would, or there is no tree).
pub fn refusal_for_stored(
    cfg: &NodeConfig,
    store: &crate::store::Store,
    name: &str,
    kver: &str,
    kernel: &dyn crate::kernel::Kernel,
) -> Option<String> {
    let tree = store.current_tree(name, kver)?;
    let aliases = module_aliases(cfg, &tree.join("lib/modules").join(kver)).ok()?;
    let g = gate(&aliases, &kernel.modaliases());
    (!g.allows(cfg.replace.require_device)).then(|| g.refusal(cfg.replace.require_device))
}

/// The `alias=` entries of each configured module in the image's tree
/// (`dir`: its `lib/modules/<kver>`); modules it lacks or cannot read are
/// left out (the tree check reports them).
pub fn module_aliases(cfg: &NodeConfig, dir: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let tree = Tree::open(dir)?;
    Ok(cfg
        .modules
        .iter()
        .filter_map(|m| {
            let e = tree.module(m)?;
            let info = crate::modinfo::read(&e.path).ok()?;
            Some((m.clone(), info.aliases))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sfc() -> Vec<(String, Vec<String>)> {
        vec![(
            "sfc".into(),
            vec![
                "pci:v00001924d00000803sv*sd*bc*sc*i*".into(),
                "pci:v00001924d00000813sv*sd*bc*sc*i*".into(),
                "net-pf-99".into(),
            ],
        )]
    }

    #[test]
    fn device_aliases_are_bus_aliases() {
        for yes in [
            "pci:v00001AF4d00001000*",
            "usb:v0BDAp8153d*",
            "acpi*:PNP0C09:*",
            "of:N*T*Cfsl,imx",
        ] {
            assert!(is_device_alias(yes), "{yes}");
        }
        for no in [
            "rtnl-link-dummy",
            "devname:net/tun",
            "char-major-10-200",
            "fs-ext4",
            "net-pf-16-proto-16",
        ] {
            assert!(!is_device_alias(no), "{no}");
        }
    }

    #[test]
    fn a_node_with_the_device_swaps_one_without_keeps_its_driver() {
        let virtio = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_string();
        let solarflare = "pci:v00001924d00000813sv00001924sd00001234bc02sc00i00".to_string();
        let g = gate(&sfc(), &[virtio.clone(), solarflare.clone()]);
        assert_eq!(
            g,
            Gate::Matched {
                module: "sfc".into(),
                alias: "pci:v00001924d00000813sv*sd*bc*sc*i*".into(),
                device: solarflare
            }
        );
        assert!(g.allows(None) && g.allows(Some(true)));

        let g = gate(&sfc(), std::slice::from_ref(&virtio));
        assert_eq!(
            g,
            Gate::NoDevice {
                aliases: 2,
                example: "pci:v00001924d00000803sv*sd*bc*sc*i*".into()
            }
        );
        assert!(!g.allows(None) && !g.allows(Some(true)));
        assert!(
            g.allows(Some(false)),
            "require_device = false keeps today's behaviour"
        );
        assert_eq!(
            g.refusal(None),
            "no device on this node matches the modules' 2 device aliases (e.g. `pci:v00001924d00000803sv*sd*bc*sc*i*`): not swapping, the in-tree driver stays (set `[replace] require_device = false` to swap on every node)"
        );
    }

    #[test]
    fn modules_without_device_aliases_swap_unless_a_device_is_required() {
        let dummy = vec![("dummy".to_string(), vec!["rtnl-link-dummy".to_string()])];
        let g = gate(&dummy, &[]);
        assert_eq!(g, Gate::NoAliases);
        assert!(g.allows(None) && g.allows(Some(false)));
        assert!(!g.allows(Some(true)));
    }
}
