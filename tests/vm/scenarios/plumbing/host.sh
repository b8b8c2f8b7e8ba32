# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A driver image in the test registry, reachable from the guest only through
# the guestfwd; a disk that must survive the guest's reboot.
SCN_BOOTS=2
SCN_DISK_MB=32

scenario_prepare() {
    local root=$1 out=$3
    serve_image "$out" dummy >/dev/null
    # What the guest must find: the digest of the manifest skopeo pushed.
    mkdir -p "$root/opt/kmmtest/expect"
    sed 's/^sha256://' "$out/digest" >"$root/opt/kmmtest/expect/manifest.sha256"
    echo "$RELEASE" >"$root/opt/kmmtest/expect/tag"
}

scenario_cleanup() {
    registry_stop
}
