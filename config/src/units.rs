//! The systemd units, embedded from `systemd/` (their one source of truth).
//!
//! Their names are static and shared by every config on a node: two
//! MachineConfigs for one pool then carry byte-identical unit files, which the
//! MCO merges cleanly, and OpenShift's nodeDisruptionPolicy can name them
//! (it cannot name `@` template instances).

/// A unit file: its name under `/etc/systemd/system` and its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub name: &'static str,
    pub contents: &'static str,
}

pub const REPLACE: Unit = Unit {
    name: "kmm-day1-replace.service",
    contents: include_str!("../../systemd/kmm-day1-replace.service"),
};

pub const PULL: Unit = Unit {
    name: "kmm-day1-pull.service",
    contents: include_str!("../../systemd/kmm-day1-pull.service"),
};

pub const PULL_STAGED: Unit = Unit {
    name: "kmm-day1-pull-staged.service",
    contents: include_str!("../../systemd/kmm-day1-pull-staged.service"),
};

/// Every unit the generator installs, in a stable order.
pub const ALL: [Unit; 3] = [REPLACE, PULL, PULL_STAGED];

#[cfg(test)]
mod tests {
    use super::*;

    fn directive<'a>(unit: &'a Unit, key: &str) -> Vec<&'a str> {
        unit.contents
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn replace_unit_runs_early_and_bounded() {
        assert_eq!(directive(&REPLACE, "DefaultDependencies"), ["no"]);
        assert!(directive(&REPLACE, "Before").contains(&"network-pre.target"));
        assert_eq!(directive(&REPLACE, "Wants"), ["network-pre.target"]);
        assert_eq!(
            directive(&REPLACE, "RequiresMountsFor"),
            ["/var/lib/kmm-day1 /usr/local/bin"]
        );
        assert_eq!(directive(&REPLACE, "Type"), ["oneshot"]);
        assert_eq!(directive(&REPLACE, "TimeoutStartSec").len(), 1);
        assert_eq!(
            directive(&REPLACE, "ExecStart"),
            ["/usr/local/bin/kmm-day1-agent replace"]
        );
    }

    #[test]
    fn pull_unit_waits_for_network_and_pivot() {
        assert_eq!(
            directive(&PULL, "After"),
            [
                "network-online.target machine-config-daemon-firstboot.service",
                "sysinit.target basic.target"
            ]
        );
        assert_eq!(directive(&PULL, "Wants"), ["network-online.target"]);
        // Every ordering line: nothing is ordered before the pull but
        // shutdown (docs/timeline.md, "Boot ordering").
        assert_eq!(directive(&PULL, "Before"), ["shutdown.target"]);
        assert_eq!(directive(&PULL, "Requires"), ["sysinit.target"]);
        assert_eq!(directive(&PULL, "Conflicts"), ["shutdown.target"]);
        assert_eq!(
            directive(&PULL, "ConditionPathExists"),
            ["!/etc/ignition-machine-config-encapsulated.json"]
        );
        assert_eq!(directive(&PULL, "EnvironmentFile"), ["-/etc/mco/proxy.env"]);
        assert_eq!(directive(&PULL, "TimeoutSec"), ["900"]);
    }

    /// multi-user.target does not wait for the pull: a target orders
    /// itself after the units it wants unless they have
    /// DefaultDependencies=no (systemd.target(5)), and with the registry
    /// down the pull takes up to TimeoutSec=900.
    #[test]
    fn the_boot_does_not_wait_for_the_pull() {
        assert_eq!(directive(&PULL, "DefaultDependencies"), ["no"]);
        // Still started at every boot, by multi-user.target.
        assert_eq!(directive(&PULL, "WantedBy"), ["multi-user.target"]);
    }

    /// The staged pull's work is its stop: the unit must be active by the
    /// first-boot pivot, stop while the network and /var are still there
    /// and before ostree finalizes, and stay active even if its start
    /// failed (a failed unit's ExecStop= never runs).
    #[test]
    fn staged_pull_runs_at_the_reboot_into_the_staged_deployment() {
        let u = &PULL_STAGED;
        assert_eq!(
            directive(u, "ExecStop"),
            ["/usr/local/bin/kmm-day1-agent pull --staged"]
        );
        assert_eq!(
            directive(u, "ExecStart"),
            ["-/usr/local/bin/kmm-day1-agent pull --staged"]
        );
        assert_eq!(directive(u, "Type"), ["oneshot"]);
        assert_eq!(directive(u, "RemainAfterExit"), ["yes"]);
        assert_eq!(
            directive(u, "After"),
            [
                "network-online.target ostree-finalize-staged.service",
                "sysinit.target basic.target"
            ]
        );
        assert_eq!(
            directive(u, "Before"),
            ["machine-config-daemon-firstboot.service", "shutdown.target"]
        );
        assert_eq!(directive(u, "Wants"), ["network-online.target"]);
        assert_eq!(
            directive(u, "RequiresMountsFor"),
            ["/var/lib/kmm-day1 /usr/local/bin"]
        );
        assert_eq!(directive(u, "DefaultDependencies"), ["no"]);
        // Above the agent's own bound, inside reboot.target's 30 min.
        let max = *crate::SHUTDOWN_TIMEOUT_RANGE.end();
        let t: u32 = directive(u, "TimeoutSec")[0].parse().unwrap();
        assert!(t > max && t < 1800, "{t}");
        assert!(directive(u, "ConditionPathExists").is_empty());
    }

    #[test]
    fn no_template_units_and_nothing_masked() {
        for u in ALL {
            assert!(!u.name.contains('@'), "{}", u.name);
            assert!(!u.contents.contains("crio-wipe"), "{}", u.name);
            assert_eq!(directive(&u, "WantedBy"), ["multi-user.target"]);
        }
    }
}
