# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A node upgraded from the previous Debian kernel to the current one, both
# real builds (lib/build.sh use_kernel): the guest first boots the previous
# release, whose tree a pull left in the store (the test modules built
# against that kernel's headers), then reboots into the current one as the
# MCO would, and the harness boots that next (SCN_KERNELS). The registry has
# a tag for each kernel, each image built from its own kernel's test modules,
# so pull must pick the running kernel's.
SCN_AGENT=1
SCN_KERNELS=("$PREV_RELEASE" "$CUR_RELEASE")
SCN_BOOTS=3
SCN_DISK_MB=64

scenario_prepare() {
    local root=$1 disk=$2 out=$3 e=$1/opt/kmmtest/expect
    [[ $PREV_RELEASE != "$CUR_RELEASE" ]] \
        || { log "kernel-upgrade: the previous kernel is the current one ($CUR_RELEASE)"; return 1; }
    registry_start "$out/registry"
    SCN_NET_PORT=$REGISTRY_PORT
    mkdir -p "$e" "$root/etc/kmm-day1"
    # The guest's KMT_RELEASE is `uname -r`: what it should be on each boot.
    echo "$PREV_RELEASE" >"$e/prev_release"
    echo "$CUR_RELEASE" >"$e/cur_release"
    # The previous kernel's image, and the tree a pull for it left on the node.
    use_kernel "$PREV_RELEASE"
    kmm_tree "$out/prev-src" dummy kmmtest_params kmmtest_fw >"$e/prev_fw_line"
    oci_image "$out/prev-src" "$out/oci" "$PREV_RELEASE"
    push_image "$out/oci" "$PREV_RELEASE" kmmtest/dummy >/dev/null
    store_tree "$out/prev-src" "$disk" kmmtest >"$e/prev_digest"
    readlink "$disk/kmmtest/$PREV_RELEASE/current" >"$e/prev_tree"
    # The current kernel's image: pushed, never pulled yet.
    use_kernel "$CUR_RELEASE"
    kmm_tree "$out/cur-src" dummy kmmtest_params kmmtest_fw >"$e/fw_line"
    oci_image "$out/cur-src" "$out/oci" "$CUR_RELEASE"
    push_image "$out/oci" "$CUR_RELEASE" kmmtest/dummy >"$e/digest"
    dummy_pull_config "$root" 6 upgraded
    reboot_recorder "$root"
}

scenario_cleanup() {
    registry_stop
}
