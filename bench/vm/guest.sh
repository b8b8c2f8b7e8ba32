# description: bench (not a test; bench/vm.sh): replace vs modprobe -d vs podman run … modprobe, and the boot's path to network-pre.target with and without the replace unit
#
# shellcheck shell=dash
# Runs from kmmtest-check.service on every boot (tests/vm/lib/tier2.sh).
# Boot 1: pull publishes and reboots. Boot 2 (the unit enabled): the replace
# comparison, then boots alternate without / with the unit. Every figure is
# printed as a `kmmtest: bench: …` line for bench/vm.sh; the checks make sure
# each run did the whole swap, so a fast figure cannot come from a run that
# did nothing.
S=/var/lib/kmm-day1
C=/opt/kmmtest/bench
V=/var/lib/kmmtest/bench
REPS=$(cat $C/reps)
PAIRS=$(cat $C/pairs)
IMAGE=$(cat $C/image)
mkdir -p $V

# systemd's "job started" and "job done" journal catalog ids.
JOB_START=7d4958e842da4a758f6c1cdc7b36dcc5
JOB_DONE=39f53479d3a045ac8e11786248231fbf

# The journal's monotonic time (s, µs precision) of unit $1's entry with
# MESSAGE_ID $2 this boot.
jmono() {
    journalctl -b -o short-monotonic --no-pager UNIT="$1" MESSAGE_ID="$2" |
        sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p' | head -n 1
}

# Seconds from the unit's job start to its job done, from the journal (which
# may lag systemctl's return by a moment).
unit_secs() {
    local a b n=0
    while [ $n -lt 50 ]; do
        a=$(jmono "$1" $JOB_START)
        b=$(jmono "$1" $JOB_DONE)
        if [ -n "$a" ] && [ -n "$b" ]; then
            awk -v a="$a" -v b="$b" 'BEGIN { printf "%.6f\n", b - a }'
            return 0
        fi
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

usec_to_s() { awk -v u="$1" 'BEGIN { printf "%.6f\n", u / 1e6 }'; }
prop() { systemctl show -P "$2" "$1"; }

oot_loaded() { [ "$(kmt_read /sys/module/dummy/version)" = kmm-day1-test ] && kmt_loaded kmmtest_user && kmt_loaded kmmtest_dep && kmt_loaded kmmtest_params; }

# The state every run starts from: the out-of-tree set unloaded, the in-tree
# dummy loaded (as stage 1 leaves it at boot), no container left over.
reset() {
    for m in kmmtest_user kmmtest_dep kmmtest_params dummy; do
        if kmt_loaded $m; then rmmod $m || return 1; fi
    done
    modprobe dummy || return 1
    [ "$(kmt_read /sys/module/dummy/version)" = "<missing>" ] && ! kmt_loaded kmmtest_params
}

RUN_FAILS=0
SOFT=0
# A failed run: a failed check, or with SOFT=1 (podman's first run) a
# `bench: error` line for the host, so the other sides still get measured.
run_failed() {
    if [ $SOFT = 1 ]; then
        kmt_log "bench: error $1"
    else
        kmt_fail "$1"
        RUN_FAILS=$((RUN_FAILS + 1))
    fi
}

# one_run SIDE RUN: reset, start bench-SIDE@RUN.service, check the swap,
# print its time.
one_run() {
    local u="bench-$1@$2.service" secs
    if ! reset; then
        run_failed "$1: reset before $u failed"
        return 1
    fi
    if ! systemctl start "$u"; then
        journalctl -b -u "$u" --no-pager | tail -n 30
        run_failed "$1: $u failed: $(journalctl -b -u "$u" -o cat --no-pager | grep -m 1 -E 'Error|error|rror:' | tr -d '\r')"
        return 1
    fi
    if ! oot_loaded; then
        run_failed "$1: $u left the set not loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
        return 1
    fi
    if ! secs=$(unit_secs "$u"); then
        run_failed "$1: no job start/done entries for $u in the journal"
        return 1
    fi
    kmt_log "bench: replace $1 $2 $secs"
}

replace_bench() {
    local t0 t1 i order side sides="ours modprobe podman"
    read -r t0 _ </proc/uptime
    kmt_run "podman pulls the driver image from the host registry" podman pull --tls-verify=false "$IMAGE"
    read -r t1 _ </proc/uptime
    if [ "$KMT_RC" = 0 ]; then
        kmt_log "bench: podman-pull $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    else
        kmt_log "bench: error podman: podman pull failed: $(printf '%s\n' "$KMT_OUT" | grep -m 1 -i error)"
        sides="ours modprobe"
    fi
    # Run 0 of each side warms the page cache and podman's first-use setup;
    # it is checked but not counted. If podman cannot run here at all, its
    # error goes to the host and the other two sides are still measured.
    for side in ours modprobe; do one_run $side 0 || return 1; done
    if [ "$sides" != "ours modprobe" ]; then
        SOFT=1
        one_run podman 0 || sides="ours modprobe"
        SOFT=0
    fi
    i=1
    while [ $i -le "$REPS" ]; do
        # A different side first in each round, so no side always runs
        # right after the same one.
        case $((i % 3)) in
        1) order="ours modprobe podman" ;;
        2) order="modprobe podman ours" ;;
        *) order="podman ours modprobe" ;;
        esac
        for side in $order; do
            case " $sides " in *" $side "*) one_run "$side" $i || return 1 ;; esac
        done
        i=$((i + 1))
    done
    kmt_eq "every timed run of $sides did the whole swap (remove in-tree dummy, load 3 + 1 dependency)" 0 "$RUN_FAILS"
    podman rm -a -f >/dev/null 2>&1
    true
}

if [ "$(kmt_json $S/kmmtest/replace.json result)" = waiting-for-pull ] && [ ! -e $V/boots ]; then
    kmt_await_pull_reboot kmmtest
else
    n=$(($(cat $V/boots 2>/dev/null || echo 0) + 1))
    echo $n >$V/boots
    pre_us=$(prop network-pre.target ActiveEnterTimestampMonotonic)
    pre=$(usec_to_s "$pre_us")
    # The same from systemd's own start: without the kernel's and stage 1's
    # share, which vary from boot to boot and are the same with or without.
    user=$(usec_to_s $((pre_us - $(systemctl show -P UserspaceTimestampMonotonic))))
    if systemctl is-enabled --quiet kmm-day1-replace.service; then
        kmt_eq "boot $n (with the unit): kmm-day1-replace.service succeeded" active "$(systemctl is-active kmm-day1-replace.service)"
        kmt_eq "and swapped dummy" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
        unit=$(usec_to_s $(($(prop kmm-day1-replace.service ActiveEnterTimestampMonotonic) - $(prop kmm-day1-replace.service InactiveExitTimestampMonotonic))))
        kmt_log "bench: boot $n with $pre $unit $user"
    else
        kmt_eq "boot $n (without the unit): kmm-day1-replace.service did not run" inactive "$(systemctl is-active kmm-day1-replace.service)"
        kmt_eq "and the in-tree dummy is loaded" "<missing>" "$(kmt_read /sys/module/dummy/version)"
        kmt_log "bench: boot $n without $pre - $user"
    fi
    kmt_check "network-pre.target was reached" test "$(prop network-pre.target ActiveEnterTimestampMonotonic)" -gt 0
    # Where the boot's time went, for docs/bench-vm.md (not parsed).
    # (systemd-analyze critical-chain needs a finished boot; this unit is
    # part of it.) What the replace unit waited for: the last of its After=
    # units to become active, and when it started itself.
    kmt_log "replace unit started at $(usec_to_s "$(prop kmm-day1-replace.service InactiveExitTimestampMonotonic)") s; systemd started at $(usec_to_s "$(systemctl show -P UserspaceTimestampMonotonic)") s; its latest After= units (active at, s):"
    for u in $(prop kmm-day1-replace.service After); do
        echo "$(usec_to_s "$(prop "$u" ActiveEnterTimestampMonotonic)") $u"
    done | sort -n | tail -n 4 | sed 's/^/    | /'
    journalctl -b --no-pager -o cat -t kmm-day1-agent | grep -F 'removed [' | sed 's/^/    | agent: /'
    if [ $n = 1 ]; then
        replace_bench
    fi
    if [ "$KMT_FAILED" = 0 ] && [ $n -lt $((2 * PAIRS)) ]; then
        if [ $((n % 2)) = 1 ]; then
            systemctl disable --quiet kmm-day1-replace.service
        else
            systemctl enable --quiet kmm-day1-replace.service
        fi
        sync
        kmt_log "rebooting for boot $((n + 1)) of $((2 * PAIRS))"
        systemctl reboot
        sleep 300
        kmt_fail "the reboot did not happen within 300 s"
    fi
fi
