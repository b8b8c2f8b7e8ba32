# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A config that asks to remove an in-tree module the node is using (ext4,
# holding the mounted disk) besides the in-tree dummy.
SCN_AGENT=1
SCN_DISK_MB=16

scenario_prepare() {
    local root=$1 out=$3
    mkdir -p "$root/etc/kmm-day1"
    kmm_tree "$out/image-src" dummy >/dev/null
    store_tree "$out/image-src" "$root/var/lib/kmm-day1" kmmtest >/dev/null
    cat >"$root/etc/kmm-day1/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy"]
in_tree_remove = ["dummy", "ext4"]
TOML
}
