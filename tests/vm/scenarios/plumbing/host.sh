# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A driver image in the test registry, reachable from the guest only through
# the guestfwd; a disk that must survive the guest's reboot.
SCN_BOOTS=2
SCN_DISK_MB=32

scenario_prepare() {
    local root=$1 out=$3
    registry_start "$out/registry"
    SCN_NET_PORT=$REGISTRY_PORT
    kmm_tree "$out/image-src" dummy >/dev/null
    oci_image "$out/image-src" "$out/oci" "$RELEASE"
    push_image "$out/oci" "$RELEASE" kmmtest/dummy >"$out/digest"
    # What the guest must find: the digest of the manifest skopeo pushed.
    mkdir -p "$root/opt/kmmtest/expect"
    sed 's/^sha256://' "$out/digest" >"$root/opt/kmmtest/expect/manifest.sha256"
    echo "$RELEASE" >"$root/opt/kmmtest/expect/tag"
}

scenario_cleanup() {
    registry_stop
}
