# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A stored tree whose kmmtest_virtio declares the PCI alias of QEMU's
# virtio-net device (1af4:1000), which this guest has: a NIC, with the
# usual restricted user network (nothing listens behind the forward).
SCN_AGENT=1
SCN_NET_PORT=9

scenario_prepare() {
    local root=$1 out=$3
    kmm_tree "$out/image-src" dummy kmmtest_virtio >/dev/null
    store_tree "$out/image-src" "$root/var/lib/kmm-day1" kmmtest >/dev/null
    swap_config "$root/etc/kmm-day1/kmmtest.toml" "" kmmtest_virtio
}
