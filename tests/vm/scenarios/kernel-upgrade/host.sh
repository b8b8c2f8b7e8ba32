# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A node that ran the previous kernel: its store has that kernel's tree, and
# the registry has a tag for each kernel. The harness has one Debian kernel
# (the one linux-image-amd64 depends on; booting a second would mean a second
# set of headers and test modules), so the "previous kernel" is a release
# name one ABI below the running one, with its own tree and tag; what the
# agent must do depends only on the running kernel having no tree.
SCN_AGENT=1
SCN_BOOTS=2
SCN_DISK_MB=64

scenario_prepare() {
    local root=$1 disk=$2 out=$3
    local abi=${RELEASE#*.*.*-}
    abi=${abi%%-*}
    local old=${RELEASE%%-"$abi"-*}-$((abi - 1))-${RELEASE#*-"$abi"-}
    [[ $old != "$RELEASE" ]] || { log "cannot derive a previous release from $RELEASE"; return 1; }
    registry_start "$out/registry"
    SCN_NET_PORT=$REGISTRY_PORT
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    echo "$old" >"$root/opt/kmmtest/expect/old_release"
    # The previous kernel's image and the tree a pull for it left.
    kmm_tree "$out/old-src" dummy kmmtest_params kmmtest_fw >/dev/null
    oci_image "$out/old-src" "$out/oci" "$old"
    push_image "$out/oci" "$old" kmmtest/dummy >"$root/opt/kmmtest/expect/old_digest"
    store_tree "$out/old-src" "$disk" kmmtest >/dev/null
    mv "$disk/kmmtest/$RELEASE" "$disk/kmmtest/$old"
    local t
    t=$(readlink "$disk/kmmtest/$old/current")
    mv "$disk/kmmtest/$old/$t/lib/modules/$RELEASE" "$disk/kmmtest/$old/$t/lib/modules/$old"
    sed -i "s/\"kernel\":\"$RELEASE\"/\"kernel\":\"$old\"/" "$disk/kmmtest/$old/$t/meta.json"
    echo "$t" >"$root/opt/kmmtest/expect/old_tree"
    # The running kernel's image: pushed, never pulled yet.
    kmm_tree "$out/image-src" dummy kmmtest_params kmmtest_fw >"$root/opt/kmmtest/expect/fw_line"
    oci_image "$out/image-src" "$out/oci" "$RELEASE"
    push_image "$out/oci" "$RELEASE" kmmtest/dummy >"$root/opt/kmmtest/expect/digest"
    dummy_pull_config "$root" 6 upgraded
    reboot_recorder "$root"
}

scenario_cleanup() {
    registry_stop
}
