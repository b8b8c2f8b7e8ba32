# shellcheck shell=bash disable=SC2034 # globals for lib/scenario.sh
# Tier 2: systemd guests. Sourced by tests/vm/run.
#
# A Debian rootfs from mmdebstrap (minbase + systemd, udev, kmod, iproute2)
# with the current guest kernel's module subset, cached as a raw ext4 image
# keyed by its inputs (a scenario that boots another kernel adds that one's
# with tier2_add_kernel_modules); each scenario boots a qcow2 overlay of it.
# The kernel is the same PVH vmlinux; the base initramfs acts as a stage 1
# that mounts the disk and switches to systemd (guest/stage1.sh). What
# Ignition would write on a node's first boot — the generator's config
# applied by the real `ignition` binary to an empty directory — is copied
# onto the root by stage 1 on the first boot only, the way Ignition runs once
# from the initramfs; systemd then applies the presets Ignition wrote (first
# boot: /etc/machine-id unset).

IGNITION=/usr/lib/dracut/modules.d/30ignition/ignition
ROOTFS_PACKAGES=systemd,systemd-sysv,udev,kmod,iproute2

# The Debian suite of the host, which the guest kernel comes from too.
host_suite() {
    . /etc/os-release
    printf '%s\n' "${VERSION_CODENAME:?/etc/os-release has no VERSION_CODENAME}"
}

build_rootfs() {
    command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed: run tests/setup.d/40-vm.sh"
    # One rootfs for every scenario: the current kernel's (MODS may be a
    # larger subset of it, bench/vm.sh); other kernels go in the overlay.
    [[ $RELEASE == "$CUR_RELEASE" ]] \
        || die "build_rootfs: the rootfs carries the current kernel's modules ($CUR_RELEASE), not $RELEASE's (use_kernel \"\$CUR_RELEASE\" first)"
    local suite
    suite=$(host_suite)
    ROOTFS_IMG=$CACHE/rootfs/$suite-$(hash_of "$suite" "$ROOTFS_PACKAGES" "$MODS").img
    [[ -s $ROOTFS_IMG ]] && return
    log "building the $suite systemd rootfs with mmdebstrap (downloads ~60 MB, about 2 minutes)"
    mkdir -p "$CACHE/rootfs"
    local tmp
    tmp=$(mktemp -d "$CACHE/rootfs/.tmp.XXXXXX")
    mmdebstrap --quiet --variant=minbase --include="$ROOTFS_PACKAGES" "$suite" "$tmp/root" \
        >"$tmp/mmdebstrap.log" 2>&1 || { cat "$tmp/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
    local r=$tmp/root
    # The in-tree modules (those the guest needs, with depmod's indexes).
    mkdir -p "$r/usr/lib/modules"
    cp -a "$MODS/lib/modules/$RELEASE" "$r/usr/lib/modules/"
    # First boot: systemd commits a machine id and applies presets.
    echo uninitialized >"$r/etc/machine-id"
    echo kmmtest >"$r/etc/hostname"
    # No password prompt stands between a developer and the serial console.
    sed -i 's|^root:[^:]*:|root::|' "$r/etc/shadow"
    truncate -s 1G "$tmp/root.img"
    mkfs.ext4 -q -F -L root -d "$r" "$tmp/root.img"
    mv "$tmp/root.img" "$ROOTFS_IMG"
    rm -rf "$tmp"
}

# tier2_add_kernel_modules OVERLAY REL: REL's in-tree module subset (with
# depmod's indexes) at OVERLAY/usr/lib/modules/REL, for a scenario whose
# guest boots REL: the rootfs carries the current kernel's only, and stage 1
# copies the overlay onto the root on the first boot. Built in a subshell:
# the caller's kernel (RELEASE, MODS…) stays what it was.
tier2_add_kernel_modules() {
    local o=$1 rel=$2 subset
    subset=$(
        set -e
        use_kernel "$rel" >&2
        printf '%s\n' "$MODS"
    )
    mkdir -p "$o/usr/lib/modules"
    cp -a "$subset/lib/modules/$rel" "$o/usr/lib/modules/"
}

# The generator: KMM_DAY1_GENERATOR, else a build in the target dir.
find_generator() {
    local g=${KMM_DAY1_GENERATOR:-}
    if [[ -z $g ]]; then
        local t=${CARGO_TARGET_DIR:-$ROOT/target}
        for g in "$t/release/kmm-day1" "$t/debug/kmm-day1" ''; do
            [[ -x $g ]] && break
        done
    fi
    [[ -n $g && -x $g ]] && printf '%s\n' "$g"
}

# ignition_apply CONFIG.ign DIR: Ignition's fetch-offline and files stages,
# as in a node's initramfs, writing into DIR (empty: only what Ignition
# writes lands there).
ignition_apply() {
    local cfg=$1 r=$2 work
    [[ -x $IGNITION ]] || die "$IGNITION is missing: install Debian's ignition"
    work=$(mktemp -d "${TMPDIR:-/tmp}/kmmtest-ign.XXXXXX")
    mkdir -p "$r/etc/selinux" "$work/bin"
    # The files stage relabels for SELinux and needs a policy type and a
    # setfiles; Debian has neither, a stub that reads the list is enough.
    printf 'SELINUX=disabled\nSELINUXTYPE=targeted\n' >"$r/etc/selinux/config"
    printf '#!/bin/sh\ncat >/dev/null\n' >"$work/bin/setfiles"
    chmod 755 "$work/bin/setfiles"
    local stage
    for stage in fetch-offline files; do
        if ! IGNITION_CONFIG_FILE=$cfg PATH="$work/bin:$PATH" "$IGNITION" -platform file -stage "$stage" \
            -root "$r" -log-to-stdout -config-cache "$work/ign.json" -state-file "$work/state" \
            -neednet "$work/neednet" >"$work/$stage.log" 2>&1; then
            cat "$work/$stage.log" >&2
            rm -rf "$work"
            return 1
        fi
    done
    rm -rf "$r/etc/selinux" "$work"
}

# The guest side of a tier-2 scenario: stage 1 as /init, and the files
# stage 1 copies onto the root on the first boot (overlay/): the scenario's
# checks as a systemd unit, networking for the guestfwd, the in-tree dummy
# loaded at boot as a node's hardware driver would be. The scenario's
# scenario_prepare adds Ignition's output (tier2_ignition).
tier2_prepare() {
    local name=$1 sdir=$2 dir=$3
    build_rootfs
    local r=$dir/root o=$dir/root/opt/kmmtest/overlay
    printf '#!/bin/busybox sh\n. /opt/kmmtest/lib.sh\nkmt_boot\n. /opt/kmmtest/stage1.sh\n' >"$r/init"
    chmod 755 "$r/init"
    mkdir -p "$o/opt/kmmtest" "$o/etc/systemd/system" "$o/etc/systemd/network" \
        "$o/etc/systemd/system-preset" "$o/etc/modules-load.d"
    cp "$VM_DIR/guest/lib.sh" "$o/opt/kmmtest/lib.sh"
    {
        echo '#!/bin/sh'
        echo '. /opt/kmmtest/lib.sh'
        # shellcheck disable=SC2016 # expanded in the guest
        echo 'KMT_RELEASE=$(uname -r)'
        cat "$sdir/guest.sh"
        echo
        echo 'kmt_finish'
    } >"$o/opt/kmmtest/check.sh"
    chmod 755 "$o/opt/kmmtest/check.sh"
    cat >"$o/etc/systemd/system/kmmtest-check.service" <<'UNIT'
[Unit]
Description=kmm-day1 VM test: checks after the agent's units
After=kmm-day1-replace.service kmm-day1-pull.service network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/opt/kmmtest/check.sh
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
UNIT
    # Enabled like the agent's units: by presets applied on the first boot.
    printf 'enable kmmtest-check.service\nenable systemd-networkd-wait-online.service\n' \
        >"$o/etc/systemd/system-preset/10-kmmtest.preset"
    # Only the virtio NIC: dummy0 (the in-tree dummy stage 1 loads) is an
    # ether link too, and the same address on it stole the route to the
    # registry in one run out of three.
    printf '[Match]\nDriver=virtio_net\n\n[Network]\nAddress=10.0.2.15/24\n' >"$o/etc/systemd/network/10-kmmtest.network"
    echo dummy >"$o/etc/modules-load.d/kmmtest-dummy.conf"
}

# tier2_ignition NAME CONFIG.toml OVERLAY: the generator's Ignition config
# for CONFIG (with the agent under test embedded), applied by Ignition into
# the overlay stage 1 copies onto the root.
tier2_ignition() {
    local name=$1 config=$2 o=$3 gen
    gen=$(find_generator) || { log "no generator: set KMM_DAY1_GENERATOR or build kmm-day1"; return 1; }
    "$gen" generate --config "$config" --name "$name" --agent "$AGENT" --format ignition \
        >"$o.ign"
    ignition_apply "$o.ign" "$o"
}
