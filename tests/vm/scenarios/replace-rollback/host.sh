# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A tree whose second module fails its init: replace must put the in-tree
# dummy back.
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3
    mkdir -p "$root/etc/kmm-day1"
    kmm_tree "$out/image-src" dummy kmmtest_fail >/dev/null
    store_tree "$out/image-src" "$root/var/lib/kmm-day1" kmmtest >/dev/null
    swap_config "$root/etc/kmm-day1/kmmtest.toml" "" kmmtest_fail
}
