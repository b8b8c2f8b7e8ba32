# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A good stored tree over three boots, one of them cut off between the load
# and the health point. The image is also an OCI layout in the guest, so
# boot 3 can run the real `pull` (the default health point) offline.
SCN_AGENT=1
SCN_BOOTS=3
SCN_DISK_MB=64

scenario_prepare() {
    local root=$1 disk=$2 out=$3
    kmm_tree "$out/image-src" dummy kmmtest_params >/dev/null
    store_tree "$out/image-src" "$disk" kmmtest >/dev/null
    oci_image "$out/image-src" "$root/opt/kmmtest/oci" "$RELEASE"
    mkdir -p "$root/etc/kmm-day1"
    guard_config "$root" kmmtest_params
}
