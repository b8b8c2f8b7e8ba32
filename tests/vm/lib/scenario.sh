# shellcheck shell=bash disable=SC2034,SC2054 # globals for tests/vm/run; commas are QEMU syntax
# Running one scenario. Sourced by tests/vm/run.
#
# A scenario is a directory tests/vm/scenarios/<name>/ with
#   guest.sh   the body of the guest's /init (busybox ash, guest/lib.sh loaded,
#              kmt_boot already done, kmt_finish called after it)
#   host.sh    optional, sourced on the host before the boot; it may set
#                SCN_BOOTS=N      boots expected in all (reboots kept, default 1)
#                SCN_KERNELS=(…)  the kernel of each QEMU process, in order
#                                 (default: the current release alone; see
#                                 boot_phases)
#                SCN_DISK_MB=N    attach a fresh ext4 virtio disk of N MiB (/dev/vda)
#                SCN_AGENT=1      put the static agent at /usr/local/bin/kmm-day1-agent
#                SCN_NET_PORT=P   network: the guest's 10.0.2.100:5000 reaches 127.0.0.1:P
#                SCN_APPEND=…     extra kernel command line
#                SCN_TIMEOUT=S    seconds before a QEMU process is killed
#                SCN_QEMU=(…)     extra QEMU arguments (a monitor socket)
#                SCN_TIER=2       a systemd guest (lib/tier2.sh): guest.sh then runs
#                                 from kmmtest-check.service once the agent's
#                                 units are done, on every boot
#              and define scenario_prepare (called with the overlay root, the
#              disk's source directory and the scenario's output directory) and
#              scenario_cleanup.
#   pending    optional: the scenario waits for a feature; its one-line reason
#              is printed and the scenario is skipped unless KMM_DAY1_VM_PENDING=1
#              (like cargo's #[ignore = "…"]); delete the file when the feature lands.

elapsed() {
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

# host_on_guest WORD OUT CMD…: in the background, runs CMD on the host once
# the guest prints `kmmtest: host: WORD` on its console (OUT/serial.log), for a
# scenario whose host side must change between two of the guest's steps (a
# registry that comes back up). The guest waits for the effect itself.
host_on_guest() {
    local word=$1 out=$2
    shift 2
    (
        until grep -aq "kmmtest: host: $word" "$out/serial.log" 2>/dev/null; do sleep 0.2; done
        "$@"
    ) &
    echo $! >>"$out/host-watchers"
}

# Ends the watchers host_on_guest started (by their ids).
host_watchers_stop() {
    local out=$1 pid
    [[ -f $out/host-watchers ]] || return 0
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$out/host-watchers"
    rm -f "$out/host-watchers"
}

# reboot_recorder ROOT: a `systemctl` at ROOT/usr/local/bin for a busybox
# guest (no systemd) that records what the agent asks for (pull's reboot) in
# /run/systemctl-requests, as a queued job would; the guest reboots itself.
reboot_recorder() {
    mkdir -p "$1/usr/local/bin"
    printf '#!/bin/sh\necho "systemctl $*" >>/run/systemctl-requests\n' >"$1/usr/local/bin/systemctl"
    chmod 755 "$1/usr/local/bin/systemctl"
}

# dummy_pull_config ROOT COUNT LABEL: the node config of the pull scenarios:
# the pushed kmmtest/dummy image for the running kernel, three modules with
# firmware, kmmtest_params given COUNT and LABEL (so a guest can tell which
# config loaded), plain HTTP to the test registry.
dummy_pull_config() {
    mkdir -p "$1/etc/kmm-day1"
    cat >"$1/etc/kmm-day1/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy", "kmmtest_params", "kmmtest_fw"]
in_tree_remove = ["dummy"]
firmware_dir = "/firmware"

[parameters]
kmmtest_params = ["count=$2", "label=$3"]

[pull]
insecure = true
TOML
}

# swap_config FILE EXTRA MODULE...: a node config for the scenario's
# kmmtest image that removes the in-tree dummy and loads the image's dummy,
# then each MODULE; EXTRA (TOML lines, may be empty) goes before [pull],
# which is plain HTTP to the test registry where one is used.
swap_config() {
    local file=$1 extra=$2 list='"dummy"' m
    shift 2
    for m in "$@"; do list+=", \"$m\""; done
    mkdir -p "$(dirname "$file")"
    cat >"$file" <<TOML
image = "10.0.2.100:5000/kmmtest/kmmtest:\${KERNEL_FULL_VERSION}"
modules = [$list]
in_tree_remove = ["dummy"]
$extra
[pull]
insecure = true
TOML
}

# full_swap_config FILE: swap_config with the dependency pair, parameters
# and firmware (the replace scenarios' whole feature set).
full_swap_config() {
    swap_config "$1" 'firmware_dir = "/firmware"

[parameters]
kmmtest_params = ["count=7", "label=hello", "enabled=1"]
' kmmtest_user kmmtest_params kmmtest_fw
}

# guard_config ROOT MODULE: the node config of the crash-loop guard
# scenarios: the out-of-tree dummy, then MODULE, from the stored tree.
guard_config() {
    swap_config "$1/etc/kmm-day1/kmmtest.toml" "" "$2"
}

find_agent() {
    local a=${KMM_DAY1_AGENT_X86_64:-}
    if [[ -z $a ]]; then
        a=${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-musl/release/kmm-day1-agent
    fi
    [[ -f $a ]] && file_is_static "$a" && printf '%s\n' "$a"
}

# Sets RESULT (pass/fail/skip), BOOTS, WALL and BOOT_TIMES for the table.
run_scenario() {
    local name=$1 sdir=$VM_DIR/scenarios/$1 dir=$OUT/$1
    rm -rf "$dir"
    mkdir -p "$dir/root" "$dir/disk-root"
    if [[ -f $sdir/pending && ${KMM_DAY1_VM_PENDING:-} != 1 ]]; then
        RESULT=skip BOOTS=0 WALL=0 BOOT_TIMES="pending: $(head -n 1 "$sdir/pending")"
        log "$name: skipped, $BOOT_TIMES"
        return
    fi
    log "$name: starting"
    # The scenario's host part runs in a subshell so its settings and
    # functions do not leak into the next scenario; it reports through files.
    # errexit holds inside it (it would not in a `|| …` list), so a failing
    # step of a scenario's preparation stops the scenario instead of booting
    # a guest with half its files.
    set +e
    (
        set -e
        run_scenario_inner "$name" "$sdir" "$dir"
    )
    local rc=$?
    set -e
    ((rc == 0)) || [[ -s $dir/serial.log ]] || log "$name: failed before the guest booted (exit $rc; see above)"
    read -r RESULT BOOTS WALL <"$dir/result" 2>/dev/null || { RESULT=fail BOOTS='?' WALL='?'; }
    BOOT_TIMES=$(sed -n 's/^.*kmmtest: boot: .* reached at \([0-9.]*\)s.*$/\1/p' "$dir/serial.log" 2>/dev/null | tr '\n' ' ')
    if [[ $RESULT == fail ]]; then
        log "$name: FAILED; last lines of $dir/serial.log:"
        tail -n 40 "$dir/serial.log" 2>/dev/null | sed 's/^/    | /' >&2 || true
    else
        log "$name: $RESULT"
    fi
}

run_scenario_inner() {
    local name=$1 sdir=$2 dir=$3
    SCN_TIER=1 SCN_BOOTS=1 SCN_DISK_MB=0 SCN_AGENT=0 SCN_NET_PORT='' SCN_APPEND='' SCN_TIMEOUT=${KMM_DAY1_VM_TIMEOUT:-180}
    SCN_QEMU=()
    SCN_KERNELS=("$CUR_RELEASE")
    scenario_prepare() { :; }
    # shellcheck disable=SC2317 # called through the EXIT trap
    scenario_cleanup() { :; }
    echo "fail 0 0" >"$dir/result"
    if [[ -f $sdir/host.sh ]]; then
        # shellcheck source=/dev/null
        . "$sdir/host.sh"
    fi
    trap scenario_cleanup EXIT

    if ((SCN_AGENT)); then
        local agent
        if ! agent=$(find_agent); then
            if [[ ${KMM_DAY1_FULL:-} == 1 ]]; then
                log "$name: no static agent (set KMM_DAY1_AGENT_X86_64 or build the musl release)"
                return 1
            fi
            log "$name: skipped: no static agent (set KMM_DAY1_AGENT_X86_64 or build the musl release)"
            echo "skip 0 0" >"$dir/result"
            return 0
        fi
        AGENT=$agent
        if ((SCN_TIER == 1)); then
            mkdir -p "$dir/root/usr/local/bin"
            cp "$agent" "$dir/root/usr/local/bin/kmm-day1-agent"
        fi
    fi

    if ((SCN_TIER == 2)); then
        tier2_prepare "$name" "$sdir" "$dir"
    else
        {
            echo '#!/bin/busybox sh'
            echo '. /opt/kmmtest/lib.sh'
            echo 'kmt_boot'
            cat "$sdir/guest.sh"
            echo
            echo 'kmt_finish'
        } >"$dir/root/init"
        chmod 755 "$dir/root/init"
    fi
    scenario_prepare "$dir/root" "$dir/disk-root" "$dir"

    # Compressed, although it is small: after a systemd guest reboots, the
    # kernel took ~35 s to unpack an uncompressed archive in front of the
    # base one (3 s when it is gzip'd too); a tier-1 reboot did not show it.
    # Built once: every kernel's initrd is this + that kernel's base.
    make_cpio "$dir/root" gz >"$dir/scenario.cpio.gz"
    local args=()
    if ((SCN_TIER == 2)); then
        qemu-img create -q -f qcow2 -b "$ROOTFS_IMG" -F raw "$dir/disk.qcow2"
        args+=(-drive "file=$dir/disk.qcow2,format=qcow2,if=virtio,cache=unsafe")
    elif ((SCN_DISK_MB > 0)); then
        truncate -s "${SCN_DISK_MB}M" "$dir/disk.img"
        mkfs.ext4 -q -F -d "$dir/disk-root" "$dir/disk.img"
        args+=(-drive "file=$dir/disk.img,format=raw,if=virtio,cache=unsafe")
    fi
    if [[ -n $SCN_NET_PORT ]]; then
        args+=(-netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:5000-cmd:socat - TCP:127.0.0.1:$SCN_NET_PORT"
            -device virtio-net-pci,netdev=n0)
    fi
    args+=("${SCN_QEMU[@]}")

    local t0 wall
    t0=$(date +%s.%N)
    boot_phases "$name" "$dir" "${args[@]}"
    wall=$(elapsed "$t0")

    # The verdict line: from /init on the console, or from the check unit
    # through the journal (tier 2: `[ uptime] check.sh[pid]: kmmtest: …`).
    if [[ -z $PHASE_WHY ]] && ! grep -aqE '(^|check\.sh\[[0-9]+\]: )kmmtest: result: PASS' "$dir/serial.log"; then
        PHASE_WHY="exit code says pass but the serial log has no PASS line"
    elif [[ -z $PHASE_WHY ]] && ((PHASE_BOOTS != SCN_BOOTS)); then
        PHASE_WHY="$PHASE_BOOTS boots, expected $SCN_BOOTS"
    fi
    if [[ -n $PHASE_WHY ]]; then
        log "$name: $PHASE_WHY"
        echo "fail $PHASE_BOOTS $wall" >"$dir/result"
        return 1
    fi
    echo "pass $PHASE_BOOTS $wall" >"$dir/result"
}

# boot_phases NAME DIR QEMU_ARG…: one QEMU process per entry of SCN_KERNELS,
# in order, on the same disk (in QEMU_ARG…), each booting that release's
# vmlinux with the scenario's archive + that release's base initramfs (its
# /opt/kmmtest/release and module subset). A node's bootloader picks the
# kernel of the next boot, QEMU cannot change it across a reboot: so every
# process but the last runs with -no-reboot, and the guest's reboot ends it
# (exit 0) and starts the next kernel's. The last one keeps reboots while more
# boots are expected (SCN_BOOTS counts the boots of all of them). All
# consoles go to DIR/serial.log, appended, so host_on_guest sees each line as
# it comes. Sets PHASE_BOOTS (boots seen) and PHASE_WHY (why the scenario
# failed, empty when the guest's exit says it passed and every boot ran the
# kernel its phase asked for).
boot_phases() {
    local name=$1 dir=$2
    shift 2
    local n=${#SCN_KERNELS[@]} i rel what initrd off rc phase_boots booted t0 why ended
    local -a qargs
    PHASE_BOOTS=0 PHASE_WHY=''
    ((n > 0)) || { PHASE_WHY="SCN_KERNELS is empty"; return 0; }
    local append="console=ttyS0 panic=-1 loglevel=4 $SCN_APPEND"
    for ((i = 0; i < n; i++)); do
        rel=${SCN_KERNELS[i]}
        use_kernel "$rel"
        # One kernel: the file names of before SCN_KERNELS (docs/testing-vm.md).
        what='' initrd=$dir/initrd
        if ((n > 1)); then
            what="phase $((i + 1))/$n (kernel $rel): "
            initrd=$dir/initrd-$((i + 1))
        fi
        cat "$dir/scenario.cpio.gz" "$BASE_INITRD" >"$initrd"
        qemu_base_args "$ACCEL" "$initrd" "$dir/serial.log"
        qargs=("${QARGS[@]}" "$@")
        if ((i < n - 1 || SCN_BOOTS - PHASE_BOOTS <= 1)); then
            qargs+=(-no-reboot)
        fi
        off=0
        if ((n > 1)); then
            log "$name: phase $((i + 1))/$n: booting kernel $rel"
            # A line of the host's between two processes, for a reader of the
            # log (no grep of the harness or of a scenario matches it).
            if [[ -s $dir/serial.log ]]; then
                [[ -z $(tail -c 1 "$dir/serial.log") ]] || echo >>"$dir/serial.log"
                off=$(stat -c %s "$dir/serial.log")
            fi
            echo "kmmtest-host: phase $((i + 1))/$n: QEMU with kernel $rel" >>"$dir/serial.log"
        fi
        t0=$(date +%s.%N)
        rc=0
        timeout -k 5 "$SCN_TIMEOUT" "$QEMU" "${qargs[@]}" -append "$append" >>"$dir/qemu.log" 2>&1 || rc=$?
        phase_boots=$(tail -c +$((off + 1)) "$dir/serial.log" 2>/dev/null | grep -ac 'kmmtest: boot: ' || true)
        PHASE_BOOTS=$((PHASE_BOOTS + phase_boots))
        # The releases this process's boots report (kmt_boot: `uname -r`).
        booted=$(tail -c +$((off + 1)) "$dir/serial.log" 2>/dev/null \
            | sed -n 's/^.*kmmtest: boot: kernel \([^ ,]*\),.*$/\1/p' | sort -u | tr '\n' ' ')
        booted=${booted% }

        # A boot of another kernel is the first thing to say: every check
        # after it is about the wrong kernel.
        why=''
        if ((phase_boots > 0)) && [[ $booted != "$rel" ]]; then
            why="the guest booted kernel $booted, expected $rel"
        elif ((rc == 124 || rc == 137)); then
            why="timed out after ${SCN_TIMEOUT}s"
        elif ((rc == 3)); then
            why="the guest reported failures"
        elif ((i < n - 1 && rc == 1)); then
            why="the guest gave its verdict instead of rebooting into the next kernel (${SCN_KERNELS[i + 1]})"
        elif ((i == n - 1 && rc == 0)); then
            # The last phase runs with -no-reboot once no more boots are
            # expected: exit 0 is a reboot nobody asked the guest for.
            why="the guest rebooted once more than the $SCN_BOOTS boots expected (or panicked; see $dir/serial.log)"
        elif ((i < n - 1 && rc != 0)) || ((i == n - 1 && rc != 1)); then
            why="QEMU exited $rc without a verdict from the guest (panic? see $dir/qemu.log)"
        elif ((phase_boots == 0)); then
            why="the guest never reached /init (no \`kmmtest: boot:\` line; see $dir/serial.log)"
        fi
        if ((n > 1)); then
            if [[ -n $why ]]; then
                ended="exit $rc"
            elif ((i < n - 1)); then
                ended="ended by the guest's reboot"
            else
                ended="ended by the guest's verdict"
            fi
            log "$name: phase $((i + 1))/$n: kernel $rel: $phase_boots boot(s) in $(elapsed "$t0")s, $ended"
        fi
        if [[ -n $why ]]; then
            PHASE_WHY=$what$why
            return 0
        fi
    done
}
