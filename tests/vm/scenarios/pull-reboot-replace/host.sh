# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# The driver image in the host registry; the guest reaches it only as
# 10.0.2.100:5000 (guestfwd). The store is on a disk that survives the reboot.
SCN_AGENT=1
SCN_BOOTS=2
SCN_DISK_MB=64

scenario_prepare() {
    local root=$1 out=$3
    registry_start "$out/registry"
    SCN_NET_PORT=$REGISTRY_PORT
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    kmm_tree "$out/image-src" dummy kmmtest_params kmmtest_fw >"$root/opt/kmmtest/expect/fw_line"
    oci_image "$out/image-src" "$out/oci" "$RELEASE"
    push_image "$out/oci" "$RELEASE" kmmtest/dummy >"$out/digest"
    cp "$out/digest" "$root/opt/kmmtest/expect/digest"
    cat >"$root/etc/kmm-day1/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy", "kmmtest_params", "kmmtest_fw"]
in_tree_remove = ["dummy"]
firmware_dir = "/firmware"

[parameters]
kmmtest_params = ["count=3", "label=pulled"]

[pull]
insecure = true
TOML
    # pull asks systemd for the reboot (after_pull = "reboot", the default);
    # this guest has no systemd: record the request, as a queued job would,
    # and let the test reboot once the agent has exited.
    mkdir -p "$root/usr/local/bin"
    cat >"$root/usr/local/bin/systemctl" <<'SH'
#!/bin/sh
echo "systemctl $*" >>/run/systemctl-requests
SH
    chmod 755 "$root/usr/local/bin/systemctl"
}

scenario_cleanup() {
    registry_stop
}
