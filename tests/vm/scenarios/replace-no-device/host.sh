# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A stored tree whose kmmtest_nodev declares a PCI alias (vendor 0xabcd)
# no QEMU guest has: the node of a mixed pool without the hardware.
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3
    kmm_tree "$out/image-src" dummy kmmtest_nodev >/dev/null
    store_tree "$out/image-src" "$root/var/lib/kmm-day1" kmmtest >/dev/null
    swap_config "$root/etc/kmm-day1/kmmtest.toml" "" kmmtest_nodev
}
