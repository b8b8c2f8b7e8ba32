# Guest side of the VM tests: sourced by every scenario's /init (busybox ash).
# Results go to the serial console as TAP-like lines and leave the VM through
# isa-debug-exit (port 0xf4): byte 0 = pass, 1 = fail; QEMU then exits with
# (byte << 1) | 1, so the host needs no log parsing to tell pass from fail.

KMT_CHECKS=0
KMT_FAILED=0

kmt_log() { echo "kmmtest: $*"; }

# PID 1 setup: filesystems, console, busybox applets, module autoloading.
kmt_boot() {
    /bin/busybox mount -t devtmpfs devtmpfs /dev
    exec </dev/console >/dev/console 2>&1
    /bin/busybox --install -s
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t tmpfs tmpfs /run
    mount -t tmpfs tmpfs /tmp
    export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    # The kernel asks userspace for modules it needs (e.g. crypto-crc32c for
    # ext4) through this helper.
    echo /sbin/modprobe >/proc/sys/kernel/modprobe
    KMT_RELEASE=$(uname -r)
    read -r KMT_UPTIME _ </proc/uptime
    kmt_log "boot: kernel $KMT_RELEASE, /init reached at ${KMT_UPTIME}s"
}

kmt_pass() {
    KMT_CHECKS=$((KMT_CHECKS + 1))
    echo "ok $KMT_CHECKS - $*"
}

kmt_fail() {
    KMT_CHECKS=$((KMT_CHECKS + 1))
    KMT_FAILED=$((KMT_FAILED + 1))
    echo "not ok $KMT_CHECKS - $*"
}

# kmt_check DESC CMD…: CMD must succeed. Its output goes to the console.
kmt_check() {
    local desc=$1
    shift
    if "$@"; then kmt_pass "$desc"; else kmt_fail "$desc (exit $?: $*)"; fi
}

# kmt_refuse DESC CMD…: CMD must fail.
kmt_refuse() {
    local desc=$1
    shift
    if "$@"; then kmt_fail "$desc (succeeded: $*)"; else kmt_pass "$desc"; fi
}

# kmt_eq DESC EXPECTED ACTUAL
kmt_eq() {
    if [ "$2" = "$3" ]; then kmt_pass "$1"; else kmt_fail "$1: expected '$2', got '$3'"; fi
}

# kmt_match DESC PATTERN TEXT: TEXT contains PATTERN (grep -E).
kmt_match() {
    if printf '%s\n' "$3" | grep -qE -- "$2"; then
        kmt_pass "$1"
    else
        kmt_fail "$1: /$2/ not in: $3"
    fi
}

kmt_loaded() { grep -q "^$1 " /proc/modules; }

# The contents of a sysfs file, or <missing>.
kmt_read() {
    if [ -r "$1" ]; then cat "$1"; else echo "<missing>"; fi
}

# Leave the VM with a verdict. A run without a single check is a failure:
# it proves nothing.
kmt_finish() {
    local verdict=PASS code=0
    if [ "$KMT_CHECKS" -eq 0 ] || [ "$KMT_FAILED" -ne 0 ]; then
        verdict=FAIL
        code=1
    fi
    read -r up _ </proc/uptime
    kmt_log "result: $verdict ($KMT_CHECKS checks, $KMT_FAILED failed) at ${up}s"
    sync
    kmt_exit "$code"
}

kmt_exit() {
    # shellcheck disable=SC2059 # the format is the octal escape of the byte
    printf "\\$(printf %03o "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    # Not reached when isa-debug-exit is present.
    poweroff -f
}

# Reboot within the same QEMU process (the host runs scenarios that reboot
# without -no-reboot); state survives on the virtio disk only.
kmt_reboot() {
    kmt_log "rebooting"
    sync
    reboot -f
}

# kmt_count_boot DIR: counts this boot in DIR/.kmmtest-boots (on the
# persistence disk, synced before anything can crash) and prints its number.
kmt_count_boot() {
    local n
    n=$(($(cat "$1/.kmmtest-boots" 2>/dev/null || echo 0) + 1))
    echo "$n" >"$1/.kmmtest-boots"
    sync
    echo "$n"
}

# The persistence disk (virtio-blk, ext4) mounted at $1.
kmt_disk() {
    modprobe virtio_pci && modprobe virtio_blk && modprobe crc32c_generic && modprobe ext4 || return 1
    local i=0
    while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    mkdir -p "$1"
    mount -t ext4 /dev/vda "$1"
}

# User networking with restrict=on: the guest reaches only the guestfwd
# address 10.0.2.100 (the host registry), nothing else.
kmt_net() {
    modprobe virtio_pci && modprobe virtio_net || return 1
    local i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    ip link set lo up
    ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up
}

# kmt_json FILE KEY: the string value of a top-level "KEY" in a JSON state
# file (enough for the agent's flat state files; busybox has no JSON tool).
kmt_json() {
    tr -d '\n' 2>/dev/null <"$1" | sed -n "s/.*\"$2\" *: *\"\\([^\"]*\\)\".*/\\1/p"
}

# Boot 1 of a tier-2 guest, before the pull's reboot: pull must have
# published CONFIG's image; the reboot it asked for then ends this boot, so
# reaching the end of the wait is a failure.
kmt_await_pull_reboot() {
    kmt_eq "boot 1: pull published the image" published "$(kmt_json "/var/lib/kmm-day1/$1/pull.json" result)"
    if [ "$KMT_FAILED" = 0 ]; then
        kmt_log "waiting for the reboot pull asked for"
        sleep 300
        kmt_fail "pull's reboot did not happen within 300 s"
    fi
}

# Runs CMD with its output (stdout and stderr) shown on the console as it
# comes (so a hang is visible in the serial log) and kept in $KMT_OUT; sets
# KMT_RC.
kmt_capture() {
    { "$@" 2>&1; echo $? >/tmp/.kmt_rc; } | tee /tmp/.kmt_out | sed 's/^/    | /'
    KMT_RC=$(cat /tmp/.kmt_rc)
    # shellcheck disable=SC2034 # read by the scenarios
    KMT_OUT=$(cat /tmp/.kmt_out)
}

# kmt_run DESC CMD…: CMD must succeed (output as kmt_capture).
kmt_run() {
    local desc=$1
    shift
    kmt_capture "$@"
    if [ "$KMT_RC" = 0 ]; then kmt_pass "$desc"; else kmt_fail "$desc (exit $KMT_RC: $*)"; fi
}

# kmt_run_fails DESC CMD…: like kmt_run, but CMD must fail.
kmt_run_fails() {
    local desc=$1
    shift
    kmt_capture "$@"
    if [ "$KMT_RC" != 0 ]; then kmt_pass "$desc (exit $KMT_RC)"; else kmt_fail "$desc (succeeded: $*)"; fi
}

# kmt_before DESC FIRST SECOND TEXT: a line of TEXT matching FIRST comes
# before any line matching SECOND (grep -E patterns).
kmt_before() {
    local a b
    a=$(printf '%s\n' "$4" | grep -nE -- "$2" | head -n 1 | cut -d: -f1)
    b=$(printf '%s\n' "$4" | grep -nE -- "$3" | head -n 1 | cut -d: -f1)
    if [ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ]; then
        kmt_pass "$1"
    else
        kmt_fail "$1: /$2/ (line ${a:-none}) not before /$3/ (line ${b:-none})"
    fi
}

# How many times a module's init ran this boot, from its own log line: tells a
# reload from a module left alone.
kmt_inits() {
    dmesg | grep -c "$1"
}

# kmt_full_swap_loaded: what the host's full_swap_config asks for is
# loaded: the out-of-tree dummy, kmmtest_dep pulled in by kmmtest_user
# (which called into it), and the config's three parameters.
kmt_full_swap_loaded() {
    kmt_eq "dummy is now the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_check "kmmtest_dep was loaded as a dependency" kmt_loaded kmmtest_dep
    kmt_eq "kmmtest_user is loaded and called into it" 42 "$(kmt_read /sys/module/kmmtest_user/parameters/dep_value)"
    kmt_eq "int parameter from the config" 7 "$(kmt_read /sys/module/kmmtest_params/parameters/count)"
    kmt_eq "string parameter from the config" hello "$(kmt_read /sys/module/kmmtest_params/parameters/label)"
    kmt_eq "bool parameter from the config" Y "$(kmt_read /sys/module/kmmtest_params/parameters/enabled)"
}
