# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# Three builds of a driver image whose module never loads (kmmtest_fail),
# each with its own digest (its firmware line differs), pushed as b1, b2, b3:
# the tag a node pulls, moved by a pipeline that keeps pushing broken builds.
SCN_AGENT=1
SCN_BOOTS=3
SCN_DISK_MB=64

scenario_prepare() {
    local root=$1 out=$3 b
    registry_start "$out/registry"
    SCN_NET_PORT=$REGISTRY_PORT
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    for b in 1 2 3; do
        kmm_tree "$out/image-src$b" dummy kmmtest_fail >/dev/null
        oci_image "$out/image-src$b" "$out/oci" "b$b"
        push_image "$out/oci" "b$b" kmmtest/dummy >"$root/opt/kmmtest/expect/digest$b"
    done
    # The config, per build; the guest installs the next one on each boot.
    for b in 1 2 3; do
        cat >"$root/opt/kmmtest/expect/kmmtest$b.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:b$b"
modules = ["dummy", "kmmtest_fail"]
in_tree_remove = ["dummy"]

[pull]
insecure = true
max_reboots_per_kernel = 2
TOML
    done
    reboot_recorder "$root"
}

scenario_cleanup() {
    registry_stop
}
