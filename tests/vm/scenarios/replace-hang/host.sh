# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A stored tree whose second module's init never returns. A hardware
# watchdog stand-in on the host: each boot, the guest arms it before
# replace (`kmmtest: host: arm-N`) and disarms it after; armed for
# WATCHDOG_S seconds without a disarm, the host resets the machine through
# QEMU's monitor, as an expired watchdog would. State survives on the disk.
SCN_AGENT=1
SCN_BOOTS=3
SCN_DISK_MB=64
WATCHDOG_S=20

scenario_prepare() {
    local root=$1 disk=$2 out=$3
    SCN_OUT=$out
    kmm_tree "$out/image-src" dummy kmmtest_hang >/dev/null
    store_tree "$out/image-src" "$disk" kmmtest >"$out/digest"
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    cp "$out/digest" "$root/opt/kmmtest/expect/digest"
    guard_config "$root" kmmtest_hang
    SCN_QEMU=(-monitor "unix:$out/monitor.sock,server,nowait")
    local n
    for n in 1 2 3; do
        host_on_guest "arm-$n\." "$out" watchdog_expire "$out" "$n"
    done
}

# Resets the guest unless boot N disarmed the watchdog in time.
watchdog_expire() {
    local out=$1 n=$2
    sleep "$WATCHDOG_S"
    grep -aq "kmmtest: host: disarm-$n\." "$out/serial.log" && return 0
    echo "vm: replace-hang: watchdog: boot $n is stuck after ${WATCHDOG_S}s, resetting" >&2
    echo system_reset | socat - "UNIX-CONNECT:$out/monitor.sock" >/dev/null
}

scenario_cleanup() {
    host_watchers_stop "$SCN_OUT"
}
