# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A config with after_pull = "live": the new tree is swapped in at once.
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3
    registry_start "$out/registry"
    SCN_NET_PORT=$REGISTRY_PORT
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1" "$root/usr/local/bin"
    kmm_tree "$out/image-src" dummy kmmtest_dep kmmtest_user >/dev/null
    oci_image "$out/image-src" "$out/oci" "$RELEASE"
    push_image "$out/oci" "$RELEASE" kmmtest/dummy >"$root/opt/kmmtest/expect/digest"
    cat >"$root/etc/kmm-day1/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy", "kmmtest_user"]
in_tree_remove = ["dummy"]

[pull]
insecure = true
after_pull = "live"
TOML
    # Any reboot request would be recorded here (this guest has no systemd).
    reboot_recorder "$root"
}

scenario_cleanup() {
    registry_stop
}
