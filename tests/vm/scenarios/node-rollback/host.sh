# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A systemd node whose driver image holds a module that fails to load.
SCN_TIER=2
SCN_AGENT=1
SCN_BOOTS=2
SCN_TIMEOUT=480

scenario_prepare() {
    local root=$1 out=$3 o=$1/opt/kmmtest/overlay
    mkdir -p "$o/opt/kmmtest/expect"
    serve_image "$out" dummy kmmtest_fail >/dev/null
    cp "$out/digest" "$o/opt/kmmtest/expect/digest"
    cat >"$out/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy", "kmmtest_fail"]
in_tree_remove = ["dummy"]

[pull]
insecure = true
TOML
    tier2_ignition kmmtest "$out/kmmtest.toml" "$o"
}

scenario_cleanup() {
    registry_stop
}
