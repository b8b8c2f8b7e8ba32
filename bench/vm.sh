#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Issue 8, the VM sections (docs/bench-vm.md), run by bench/run:
#   2. replace in the VM: the agent's replace of a 3-module set vs bare
#      `modprobe -d <the store's extracted tree>` vs the seed approach
#      (`podman run --privileged --entrypoint modprobe IMAGE -d /opt …`), each
#      a oneshot unit run in the same boot, guest time from the unit's job
#      start to its job done in the journal;
#   3. boot critical path: kernel start → network-pre.target
#      (ActiveEnterTimestampMonotonic) with and without kmm-day1-replace.service,
#      alternate boots;
#   4. the install timeline with the first-boot pivot, in boots and guest
#      seconds, with the staged pull and with the flow before it (below).
# One QEMU process (TCG here), the tier-2 machinery of tests/vm: Debian systemd
# guest (plus podman) configured by the real Ignition from the generator's
# config, driver image pulled from the host registry by the agent.
#
#   bench/vm.sh [--prepare | --report [DIR]]
#   --prepare: build the cached guest inputs only; --report: the rows of an
#   earlier run from DIR/serial.log (default: the last run)
#
# Environment: BENCH_REPS (timed runs per side, default 7),
# BENCH_VM_PAIRS (with/without boot pairs, default 3), and the VM harness's
# own (KMM_DAY1_VM_ACCEL, KMM_DAY1_VM_CACHE, KMM_DAY1_AGENT_X86_64,
# KMM_DAY1_GENERATOR).
set -euo pipefail

BENCH_VM=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vm
ROOT=$(cd "$BENCH_VM/../.." && pwd)
VM_DIR=$ROOT/tests/vm
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

export BENCH_VM_REPS=${BENCH_REPS:-7}
export BENCH_VM_PAIRS=${BENCH_VM_PAIRS:-3}
# Generous: a TCG boot of this guest takes ~30 s, a podman run a few seconds.
export BENCH_VM_TIMEOUT=$((300 + 120 * (1 + 2 * BENCH_VM_PAIRS) + 60 * BENCH_VM_REPS))
# podman, its network and the container next to the guest's own processes.
export KMM_DAY1_VM_MEM=${KMM_DAY1_VM_MEM:-512}

# The VM harness's cache (tests/vm/run chooses it the same way).
if [[ -n ${KMM_DAY1_VM_CACHE:-} ]]; then
    CACHE=$KMM_DAY1_VM_CACHE
elif mkdir -p /var/cache/kmm-day1-tests/vm 2>/dev/null && [[ -w /var/cache/kmm-day1-tests/vm ]]; then
    CACHE=/var/cache/kmm-day1-tests/vm
else
    CACHE=$VM_DIR/.cache
fi
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
OUT=${BENCH_DIR:-$ROOT/target/bench}/vm
log() { echo "bench vm: $*" >&2; }
die() {
    echo "bench vm: error: $*" >&2
    exit 2
}

for lib in build qemu scenario tier2 images registry; do
    # shellcheck source=/dev/null
    . "$VM_DIR/lib/$lib.sh"
done

run_guest() {
    prepare_all

    # The bench guest: the tier-2 rootfs plus podman with crun, netavark,
    # iptables and dbus (crun reaches systemd through it), as on a node, and
    # the in-tree modules podman's storage and network need (overlay, bridge,
    # veth, netfilter) next to the test suite's subset.
    bench_module_list() {
        grep -v -e '^#' -e '^$' "$VM_DIR/lib/guest-modules.list"
        dpkg-deb --fsys-tarfile "$KDIR/image.deb" | tar -t |
            grep -E "^\./lib/modules/$RELEASE/kernel/(fs/overlayfs|net/bridge|net/netfilter|net/ipv4/netfilter|net/ipv6/netfilter)/.*\.ko$|/drivers/net/veth\.ko$" |
            sed 's|.*/||; s|\.ko$||' | sort
    }
    mkdir -p "$CACHE/bench"
    bench_module_list >"$CACHE/bench/modules-$RELEASE.list.tmp"
    mv "$CACHE/bench/modules-$RELEASE.list.tmp" "$CACHE/bench/modules-$RELEASE.list"
    build_module_subset "$CACHE/bench/modules-$RELEASE.list"
    ROOTFS_PACKAGES=$ROOTFS_PACKAGES,podman,crun,netavark,iptables,dbus
    build_rootfs
    log "prepared in $(elapsed "$t_start")s: kernel $RELEASE, rootfs $(basename "$ROOTFS_IMG")"
    [[ $mode != --prepare ]] || exit 0

    # The binaries under test, built from this checkout unless given.
    if [[ -z ${KMM_DAY1_AGENT_X86_64:-} ]]; then
        log "building the static agent"
        bash agent/build-release.sh x86_64-unknown-linux-musl >&2
    fi
    if [[ -z ${KMM_DAY1_GENERATOR:-} ]]; then
        log "building the generator"
        cargo build --release --locked -q -p kmm-day1 >&2
    fi

    mkdir -p "$OUT"
    probe_accel
    log "booting the bench guest ($ACCEL; $BENCH_VM_REPS runs per side, $BENCH_VM_PAIRS boot pairs; serial log in $OUT/bench-vm/serial.log)"
    dir=$OUT/bench-vm
    rm -rf "$dir"
    mkdir -p "$dir/root" "$dir/disk-root"
    t0=$(bench_now)
    set +e
    (
        set -e
        run_scenario_inner bench-vm "$BENCH_VM" "$dir"
    )
    rc=$?
    set -e
    wall=$(elapsed "$t0")
    read -r result boots _ <"$dir/result" 2>/dev/null || result=fail
    log "guest run: $result, $boots boots, ${wall}s wall (exit $rc)"
}

cd "$ROOT"
t_start=$(bench_now)
mode=${1:-}
dir=$OUT/bench-vm
if [[ $mode == --report ]]; then
    # The rows of an earlier run, from its serial log.
    dir=${2:-$dir}
    read -r result boots _ <"$dir/result" 2>/dev/null || result=fail
else
    run_guest
fi

# The figures, once per key (a console line may be repeated). As in the
# other sections, a ratio is the median (min–max) of per-round ratios: the
# three sides of one round ran back to back, and boot 2k-1 (with the unit)
# and 2k (without) make a pair.
lines() { sed -n 's/^.*kmmtest: bench: //p' "$dir/serial.log" | tr -d '\r' | sort -u; }
# Seconds per timed run of side $1 (run 0, the warm-up, left out).
side() { lines | awk -v s="$1" '$1 == "replace" && $2 == s && $3 > 0 { print $4 }'; }
# "a b" per round in which both sides $1 and $2 ran.
rounds() {
    lines | awk -v a="$1" -v b="$2" '$1 == "replace" && $3 > 0 { v[$2, $3] = $4; r[$3] = 1 }
        END { for (i in r) if ((a, i) in v && (b, i) in v) print v[a, i], v[b, i] }'
}
# Field $1 of the boot lines, "with without" per pair of boots.
boot_pairs() {
    lines | awk -v c="$1" '$1 == "boot" { v[$2] = $c; w[$2] = $3 }
        END { for (n in v) if (w[n] == "with" && w[n + 1] == "without") print v[n], v[n + 1] }'
}
# Column $1 of boot lines of variant $2.
boots() { lines | awk -v c="$1" -v w="$2" '$1 == "boot" && $3 == w { print $c }'; }

if [[ $result != pass ]]; then
    log "the bench guest failed; last lines of $dir/serial.log:"
    grep -a -e 'not ok' -e 'kmmtest:' "$dir/serial.log" | tail -n 30 | sed 's/^/    | /' >&2 || true
fi

ms() { awk '{ printf "%.1f\n", $1 * 1000 }'; }
stats_ms() { bench_stats '%.1f' "$@" | sed 's/$/ ms/'; }
met() { awk -v r="$1" -v g="$2" -v op="$3" 'BEGIN { if (op == "le") print (r <= g ? "yes" : "no"); else print (r >= g ? "yes" : "no") }'; }

mapfile -t o_ms < <(side ours | ms)
mapfile -t m_ms < <(side modprobe | ms)
mapfile -t p_ms < <(side podman | ms)
mapfile -t r_om < <(rounds ours modprobe | awk '{ printf "%.3f\n", $1 / $2 }')
mapfile -t f_po < <(rounds ours podman | awk '{ printf "%.2f\n", $2 / $1 }')
if ((${#r_om[@]} > 0)); then
    r=$(bench_median "${r_om[@]}")
    bench_row "VM replace, 3 modules + 1 dep, unit start→end (n=${#r_om[@]}): ours vs modprobe -d" \
        "$(stats_ms "${o_ms[@]}")" "$(stats_ms "${m_ms[@]}")" "$(bench_stats '%.2f' "${r_om[@]}" | sed 's/ /× /')" \
        "≤ 1.2×" "$(met "$r" 1.2 le)"
else
    bench_row "VM replace: ours vs modprobe -d" "no data" "no data" "—" "≤ 1.2×" "no (see $dir/serial.log)"
fi
if ((${#f_po[@]} > 0)); then
    f=$(bench_median "${f_po[@]}")
    bench_row "VM replace (n=${#f_po[@]}): ours vs podman run --privileged … modprobe -d /opt" \
        "$(stats_ms "${o_ms[@]}")" "$(stats_ms "${p_ms[@]}")" \
        "$(bench_stats '%.1f' "${f_po[@]}" | sed 's/ /× /') faster" "≥ 10× faster" "$(met "$f" 10 ge)"
else
    perr=$(lines | sed -n 's/^error podman: //p' | head -n 1)
    [[ -z $perr ]] || log "podman could not run in the guest: $perr"
    bench_row "VM replace: ours vs podman run … modprobe" "no data" "${perr:+podman failed: }${perr:-no data}" "—" "≥ 10× faster" "no (see $dir/serial.log)"
fi
# boot_rows FIELD LABEL: the with/without row of one boot figure.
boot_row() {
    local -a w wo ratio cost
    mapfile -t w < <(boots "$1" with)
    mapfile -t wo < <(boots "$1" without)
    mapfile -t ratio < <(boot_pairs "$1" | awk '{ printf "%.3f\n", $1 / $2 }')
    mapfile -t cost < <(boot_pairs "$1" | awk '{ printf "%.3f\n", $1 - $2 }')
    if ((${#ratio[@]} == 0)); then
        bench_row "VM boot: $2, with vs without the replace unit" "no data" "no data" "—" "report the cost" "no (see $dir/serial.log)"
        return
    fi
    bench_row "VM boot: $2, with vs without the replace unit (${#ratio[@]} pairs; cost $(bench_stats '%+.2f' "${cost[@]}") s)" \
        "$(bench_stats '%.2f' "${w[@]}") s" "$(bench_stats '%.2f' "${wo[@]}") s" \
        "$(bench_stats '%.2f' "${ratio[@]}" | sed 's/ /× /')" "report the cost" "—"
}
boot_row 4 "kernel start → network-pre.target"
boot_row 6 "systemd start → network-pre.target"
mapfile -t u_ms < <(boots 5 with | ms)
if ((${#u_ms[@]} > 0)); then
    bench_row "VM boot: kmm-day1-replace.service start→end, on that path (n=${#u_ms[@]})" \
        "$(stats_ms "${u_ms[@]}")" "—" "—" "report the cost" "—"
fi
# 4. The install timeline (issue 20): first boot → the out-of-tree driver
#    loaded by kmm-day1-replace, in boots and guest seconds (each earlier
#    boot's length plus the last boot's time to the replace unit's end, from
#    the guest's persistent journal), for the install with the first-boot
#    pivot: the staged pull (new) against the same node with
#    kmm-day1-pull-staged masked, the flow before it (old: the pull after the
#    pivot reboots once more). The tests/vm scenario node-install-staged.
install_ok=1
timeline() { sed -n "s/^.*kmmtest: timeline: $1 //p" "$OUT/install-$1/node-install-staged/serial.log" 2>/dev/null | tr -d '\r' | tail -n 1; }
if [[ $mode != --report ]]; then
    for flow in new old; do
        log "install timeline, $flow flow (tests/vm scenario node-install-staged)"
        KMMTEST_INSTALL_FLOW=$flow KMM_DAY1_VM_OUT=$OUT/install-$flow \
            "$VM_DIR/run" node-install-staged >&2 || install_ok=0
    done
fi
new_t=$(timeline new) old_t=$(timeline old)
if [[ -n $new_t && -n $old_t ]]; then
    field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
    nb=$(field boots "$new_t") ns=$(field guest_seconds "$new_t")
    ob=$(field boots "$old_t") os=$(field guest_seconds "$old_t")
    bench_row "VM install timeline, first boot → out-of-tree driver loaded: staged pull vs the pull that reboots after the pivot" \
        "$nb boots, $(printf '%.1f' "$ns") s" "$ob boots, $(printf '%.1f' "$os") s" \
        "$((ob - nb)) boot fewer, $(awk -v a="$os" -v b="$ns" 'BEGIN { printf "%.1f", a - b }') s less" \
        "one reboot, the MCO's" "$([[ $nb == 2 ]] && echo yes || echo no)"
else
    bench_row "VM install timeline: staged pull vs reboot after the pivot" "no data" "no data" "—" "one reboot, the MCO's" "no (see $OUT/install-*/node-install-staged/serial.log)"
    install_ok=0
fi
log "section wall time $(elapsed "$t_start")s"
[[ $result == pass ]] && ((install_ok))
