# shellcheck shell=bash
# Stand-ins for what an RHCOS node does around the agent's staged pull
# (docs/upgrades.md), for tier-2 scenarios whose guest boots two real
# kernels (SCN_KERNELS). Sourced by a scenario's host.sh.
#
# On a node, rpm-ostree stages the next deployment (the first-boot pivot,
# every update) under /ostree/deploy/<stateroot>/deploy/<checksum>.<serial>/
# and records it in /run/ostree/staged-deployment (a GVariant whose strings
# name the deployment); the MCD then reboots; in that shutdown
# ostree-finalize-staged.service writes the boot entry. Here:
#   /opt/kmmtest/ostree-stage.sh RELEASE SERIAL
#       moves RELEASE's in-tree module tree off the root into a deployment
#       directory with a vmlinuz, writes the staged file as ostree lays out
#       its strings, and starts the finalize stand-in (as ostree's .path unit
#       does when the file appears). The tree is off the root until the
#       finalize: the agent can only have found the kernel in the deployment.
#   ostree-finalize-staged.service (stand-in)
#       ExecStop= records whether the store already had the staged kernel's
#       tree (the staged pull must stop before it), puts the module tree back
#       where the booted deployment will have it, removes the staged file,
#       and prints `kmmtest: host: finalized` (host_on_guest can act on it).
#   machine-config-daemon-firstboot.service (stand-in)
#       with /etc/ignition-machine-config-encapsulated.json present (what
#       Ignition leaves for the MCD): runs the scenario's checks of the
#       pre-pivot boot (KMMTEST_PIVOT=1), stages the release, removes the
#       file and reboots.
#   /opt/kmmtest/mcd-update.sh RELEASE SERIAL
#       an update on a running node: stage, then reboot.
# The harness boots the staged release next (SCN_KERNELS).

OSTREE_CSUM=5a0f3c9e1b7d2a4c6e8f0b1d3c5e7a9f2b4d6c8e0a1c3e5f7b9d2a4c6e8f0b1d

# ostree_stand_ins OVERLAY FIRSTBOOT_RELEASE: the stand-ins in the overlay;
# FIRSTBOOT_RELEASE empty: no first-boot pivot (a node already installed).
ostree_stand_ins() {
    local o=$1 pivot=$2
    mkdir -p "$o/opt/kmmtest" "$o/etc/systemd/system" "$o/etc/systemd/system-preset" "$o/var/log/journal"
    cat >"$o/opt/kmmtest/ostree-stage.sh" <<SH
#!/bin/sh
# ostree-stage.sh RELEASE SERIAL (tests/vm/lib/ostree.sh)
set -e
name=$OSTREE_CSUM.\$2
dep=/ostree/deploy/rhcos/deploy/\$name
mkdir -p \$dep/usr/lib/modules
mv /usr/lib/modules/\$1 \$dep/usr/lib/modules/\$1
echo "vmlinuz of \$1" >\$dep/usr/lib/modules/\$1/vmlinuz
mkdir -p /run/ostree
printf 'target\\000\\000name\\000\\000s\\010%s\\000\\000s\\010osname\\000\\000s\\010rhcos\\000\\000s\\010bootcsum\\000\\000s\\01000ff\\000' "\$name" >/run/ostree/staged-deployment
echo "\$1 \$dep" >/run/kmmtest-staged
systemctl start ostree-finalize-staged.service
echo "kmmtest: staged \$1 as deployment rhcos/\$name" >/dev/console
SH
    cat >"$o/opt/kmmtest/ostree-finalize.sh" <<'SH'
#!/bin/sh
# ExecStop of the ostree-finalize-staged stand-in (tests/vm/lib/ostree.sh).
[ -f /run/kmmtest-staged ] || exit 0
read -r rel dep </run/kmmtest-staged
if ls /var/lib/kmm-day1/*/"$rel"/current/meta.json >/dev/null 2>&1; then had=yes; else had=no; fi
read -r up _ </proc/uptime
echo "$rel $had $up" >>/var/lib/kmmtest/finalize.log
cp -a "$dep/usr/lib/modules/$rel" /usr/lib/modules/
rm -f "/usr/lib/modules/$rel/vmlinuz" /run/ostree/staged-deployment
sync
echo "kmmtest: host: finalized (store had the tree of $rel: $had)" >/dev/console
SH
    cat >"$o/opt/kmmtest/mcd-update.sh" <<'SH'
#!/bin/sh
# The MCD's update of a running node (tests/vm/lib/ostree.sh): the node is
# drained (nothing runs here), the new OS staged, then the reboot.
/opt/kmmtest/ostree-stage.sh "$1" "$2" || exit 1
echo "kmmtest: mcd stand-in: rebooting into $1" >/dev/console
systemctl reboot
SH
    chmod 755 "$o"/opt/kmmtest/{ostree-stage,ostree-finalize,mcd-update}.sh
    cat >"$o/etc/systemd/system/ostree-finalize-staged.service" <<'UNIT'
[Unit]
Description=kmm-day1 VM test: stand-in for ostree-finalize-staged
DefaultDependencies=no
After=local-fs.target systemd-journal-flush.service
Conflicts=shutdown.target
Before=shutdown.target
RequiresMountsFor=/var/lib

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/opt/kmmtest/ostree-finalize.sh
UNIT
    [[ -n $pivot ]] || return 0
    echo '{"kmmtest": "the MCD stand-in pivots while this file exists"}' \
        >"$o/etc/ignition-machine-config-encapsulated.json"
    cat >"$o/etc/systemd/system/machine-config-daemon-firstboot.service" <<UNIT
[Unit]
Description=kmm-day1 VM test: stand-in for the MCD's first-boot pivot
ConditionPathExists=/etc/ignition-machine-config-encapsulated.json
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
# The scenario's checks of the pre-pivot boot run here: kmmtest-check.service
# is ordered after kmm-day1-pull, which waits for this unit.
Environment=KMMTEST_PIVOT=1
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/opt/kmmtest/check.sh
ExecStart=/opt/kmmtest/ostree-stage.sh $pivot 0
ExecStart=/bin/rm /etc/ignition-machine-config-encapsulated.json
ExecStart=/bin/sh -c 'echo "kmmtest: mcd stand-in: pivot, rebooting into $pivot" >/dev/console; systemctl reboot'

[Install]
WantedBy=multi-user.target
UNIT
    echo 'enable machine-config-daemon-firstboot.service' >"$o/etc/systemd/system-preset/10-kmmtest-mcd.preset"
}

# The guest's timeline line for the bench (bench/vm.sh): boots and guest
# seconds from the first boot to the replace unit's load, from the
# persistent journal (ostree_stand_ins creates /var/log/journal).
# shellcheck disable=SC2016,SC2034 # expanded in the guest; read by the scenario's host.sh
KMMTEST_TIMELINE='timeline() {
    n=0 total=0
    for b in $(journalctl --list-boots --no-pager -q | awk "{print \$1}"); do
        n=$((n + 1))
        if [ "$b" = 0 ]; then
            t=$(journalctl -b 0 -o short-monotonic --no-pager | grep -m1 "Finished kmm-day1-replace.service" | sed -n "s/^\[ *\([0-9.]*\)\].*/\1/p")
        else
            t=$(journalctl -b "$b" -o short-monotonic --no-pager | tail -n 1 | sed -n "s/^\[ *\([0-9.]*\)\].*/\1/p")
        fi
        total=$(awk -v a="$total" -v b="${t:-0}" "BEGIN { print a + b }")
    done
    kmt_log "timeline: $1 boots=$n guest_seconds=$total"
}'

# upgrade_scenario VARIANT: the settings and hooks of a node-upgrade-*
# scenario's host.sh (below: upgrade_prepare).
# shellcheck disable=SC2034,SC2317 # SCN_* and the hooks are lib/scenario.sh's
upgrade_scenario() {
    SCN_TIER=2
    SCN_AGENT=1
    SCN_KERNELS=("$PREV_RELEASE" "$CUR_RELEASE")
    SCN_BOOTS=2
    SCN_TIMEOUT=600
    UPGRADE_VARIANT=$1
    scenario_prepare() { upgrade_prepare "$1" "$3" "$UPGRADE_VARIANT"; }
    scenario_cleanup() { upgrade_cleanup; }
}

# upgrade_prepare ROOT OUT VARIANT: the node-upgrade-* scenarios. A node
# that has joined the cluster (the kubelet's client certificate is there)
# boots the previous kernel; the registry serves its image and, unless
# VARIANT is no-image, the current kernel's. VARIANT registry-down: the
# guest asks for the registry to go down before the update and the
# registry comes back once the finalize stand-in ran (the reboot's end).
upgrade_prepare() {
    local out=$2 variant=$3 o=$1/opt/kmmtest/overlay
    mkdir -p "$o/opt/kmmtest/expect" "$o/var/lib/kubelet/pki"
    use_kernel "$PREV_RELEASE"
    serve_image "$out" dummy kmmtest_params kmmtest_fw >"$o/opt/kmmtest/expect/prev_fw_line"
    cp "$out/digest" "$o/opt/kmmtest/expect/prev_digest"
    use_kernel "$CUR_RELEASE"
    if [[ $variant != no-image ]]; then
        kmm_tree "$out/cur-src" dummy kmmtest_params kmmtest_fw >"$o/opt/kmmtest/expect/fw_line"
        oci_image "$out/cur-src" "$out/oci" "$CUR_RELEASE" >&2
        push_image "$out/oci" "$CUR_RELEASE" kmmtest/dummy >"$o/opt/kmmtest/expect/digest"
    fi
    if [[ $variant == registry-down ]]; then
        UPGRADE_OUT=$out
        host_on_guest registry-down "$out" registry_stop
        host_on_guest finalized "$out" upgrade_registry_again "$out" "$SCN_NET_PORT"
    fi
    echo "$PREV_RELEASE" >"$o/opt/kmmtest/expect/boot_release"
    echo "$CUR_RELEASE" >"$o/opt/kmmtest/expect/staged_release"
    echo "$variant" >"$o/opt/kmmtest/expect/variant"
    echo "issued by the kubelet stand-in" >"$o/var/lib/kubelet/pki/kubelet-client-current.pem"
    tier2_add_kernel_modules "$o" "$PREV_RELEASE"
    ostree_stand_ins "$o" ""
    cp "$VM_DIR/scenarios/node-upgrade-staged/upgrade.sh" "$o/opt/kmmtest/upgrade.sh"
    # The pull scenarios' config, bounded in the shutdown for the
    # registry-down variant's 20 s assertion.
    dummy_pull_config "$out/cfg" 9 upgrade
    echo 'shutdown_timeout_secs = 20' >>"$out/cfg/etc/kmm-day1/kmmtest.toml"
    mv "$out/cfg/etc/kmm-day1/kmmtest.toml" "$out/kmmtest.toml"
    tier2_ignition kmmtest "$out/kmmtest.toml" "$o"
}

upgrade_registry_again() {
    registry_start "$1/registry" --port "$2"
    echo "$REGISTRY_PID" >"$1/registry-again.pid"
}

upgrade_cleanup() {
    if [[ -n ${UPGRADE_OUT:-} ]]; then
        host_watchers_stop "$UPGRADE_OUT"
        [[ ! -f $UPGRADE_OUT/registry-again.pid ]] || kill "$(cat "$UPGRADE_OUT/registry-again.pid")" 2>/dev/null || true
    fi
    registry_stop
}
