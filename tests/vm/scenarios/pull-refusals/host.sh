# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# One image in the registry (only the out-of-tree dummy) and three configs
# that ask for it: one for a tag that does not exist, one for a module the
# image lacks, one that is fine.
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3
    serve_image "$out" dummy >/dev/null
    mkdir -p "$root/etc/kmm-day1"
    local repo='10.0.2.100:5000/kmmtest/dummy'
    cat >"$root/etc/kmm-day1/missing-tag.toml" <<TOML
image = "$repo:nosuch-\${KERNEL_FULL_VERSION}"
modules = ["dummy"]
[pull]
insecure = true
after_pull = "none"
TOML
    cat >"$root/etc/kmm-day1/missing-module.toml" <<TOML
image = "$repo:\${KERNEL_FULL_VERSION}"
modules = ["dummy", "kmmtest_params"]
[pull]
insecure = true
after_pull = "none"
TOML
    cat >"$root/etc/kmm-day1/good.toml" <<TOML
image = "$repo:\${KERNEL_FULL_VERSION}"
modules = ["dummy"]
[pull]
insecure = true
after_pull = "none"
TOML
}

scenario_cleanup() {
    registry_stop
}
