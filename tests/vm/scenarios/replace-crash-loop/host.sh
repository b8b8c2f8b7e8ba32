# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A stored tree whose second module panics the kernel in its init. The
# store is on a disk that survives the reboots; panic=1 reboots the guest
# a second after each panic, within the same QEMU process.
SCN_AGENT=1
SCN_BOOTS=3
SCN_DISK_MB=64
SCN_APPEND="panic=1"

scenario_prepare() {
    local root=$1 disk=$2 out=$3
    kmm_tree "$out/image-src" dummy kmmtest_panic >/dev/null
    store_tree "$out/image-src" "$disk" kmmtest >"$out/digest"
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    cp "$out/digest" "$root/opt/kmmtest/expect/digest"
    guard_config "$root" kmmtest_panic
}
