# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A systemd node whose first boot gets the generator's Ignition config (agent,
# node config, units, presets) and the driver image in the host registry.
# Three boots in one QEMU process: pull + reboot, swap, steady state.
SCN_TIER=2
SCN_AGENT=1
SCN_BOOTS=3
SCN_TIMEOUT=600

scenario_prepare() {
    local root=$1 out=$3 o=$1/opt/kmmtest/overlay
    mkdir -p "$o/opt/kmmtest/expect"
    serve_image "$out" dummy kmmtest_params kmmtest_fw kmmtest_dep kmmtest_user >"$o/opt/kmmtest/expect/fw_line"
    cp "$out/digest" "$o/opt/kmmtest/expect/digest"
    cat >"$out/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy", "kmmtest_params", "kmmtest_fw", "kmmtest_user"]
in_tree_remove = ["dummy"]
firmware_dir = "/firmware"

[parameters]
kmmtest_params = ["count=5", "label=node"]

[pull]
insecure = true
TOML
    tier2_ignition kmmtest "$out/kmmtest.toml" "$o"
}

scenario_cleanup() {
    registry_stop
}
