# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# The image in the registry has kmmtest_params (count: int, label: charp,
# enabled: bool). Two configs ask for it with a parameter the module does
# not have and with a value its type cannot take; both would reboot the node
# after a publish (after_pull's default).
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3
    serve_image "$out" dummy kmmtest_params >/dev/null
    reboot_recorder "$root"
    local repo='10.0.2.100:5000/kmmtest/dummy'
    mkdir -p "$root/etc/kmm-day1"
    cat >"$root/etc/kmm-day1/typo.toml" <<TOML
image = "$repo:\${KERNEL_FULL_VERSION}"
modules = ["dummy", "kmmtest_params"]
in_tree_remove = ["dummy"]

[parameters]
kmmtest_params = ["cout=7", "label=hello"]

[pull]
insecure = true
TOML
    cat >"$root/etc/kmm-day1/badvalue.toml" <<TOML
image = "$repo:\${KERNEL_FULL_VERSION}"
modules = ["dummy", "kmmtest_params"]
in_tree_remove = ["dummy"]

[parameters]
kmmtest_params = ["count=seven"]

[pull]
insecure = true
TOML
}

scenario_cleanup() {
    registry_stop
}
