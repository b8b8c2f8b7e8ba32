# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A driver tree already in the store (as pull leaves it), laid out directly:
# replace is tested on its own, without the registry.
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    kmm_tree "$out/image-src" dummy kmmtest_dep kmmtest_user kmmtest_params kmmtest_fw \
        >"$root/opt/kmmtest/expect/fw_line"
    # Each configured module's srcversion, read from the image's own .ko
    # (not from the agent): what the kernel must run after the swap.
    local m sv
    for m in dummy kmmtest_user kmmtest_params kmmtest_fw; do
        sv=$(modinfo -F srcversion "$out/image-src/opt/lib/modules/$RELEASE/extra/$m.ko")
        [[ $sv =~ ^[0-9A-F]+$ ]] || { echo "replace: $m.ko of the image has no srcversion ('$sv')" >&2; return 1; }
        printf '%s %s\n' "$m" "$sv"
    done >"$root/opt/kmmtest/expect/srcversions"
    # Kept aside: the guest moves it into /var/lib/kmm-day1 after checking
    # what replace does with an empty store.
    store_tree "$out/image-src" "$root/opt/kmmtest/store" kmmtest >"$root/opt/kmmtest/expect/digest"
    full_swap_config "$root/etc/kmm-day1/kmmtest.toml"
}
