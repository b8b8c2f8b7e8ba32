# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# Replace under SELinux enforcing: Debian's kernel booted with SELinux, a
# small test policy (policy.cil, compiled here with secilc) that keeps the
# targeted policy's module-loading rules, the store on a tmpfs labelled
# var_lib_t as a node's is. Two trees: the replace scenario's (swap with
# dependency, parameters and firmware) and the rollback scenario's.
SCN_AGENT=1
SCN_APPEND="security=selinux selinux=1 enforcing=1"

scenario_prepare() {
    local root=$1 out=$3 sdir=$VM_DIR/scenarios/replace-selinux
    mkdir -p "$root/opt/kmmtest/expect" "$root/opt/kmmtest/selinux" \
        "$root/etc/kmm-day1" "$root/etc/kmm-day1-noload" "$root/etc/kmm-day1-fail"
    secilc -o "$root/opt/kmmtest/selinux/policy.bin" -f /dev/null "$sdir/policy.cil"
    cc -static -O2 -Wall -Wextra -Werror -o "$root/opt/kmmtest/finit" "$sdir/finit.c"

    kmm_tree "$out/image-src" dummy kmmtest_dep kmmtest_user kmmtest_params kmmtest_fw \
        >"$root/opt/kmmtest/expect/fw_line"
    store_tree "$out/image-src" "$root/opt/kmmtest/store" kmmtest >"$root/opt/kmmtest/expect/digest"
    full_swap_config "$root/etc/kmm-day1/kmmtest.toml"
    # The same tree, one module that nothing in-tree blocks: for the domain
    # that may not load from memory (the agent's SELinux message).
    cat >"$root/etc/kmm-day1-noload/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/kmmtest:\${KERNEL_FULL_VERSION}"
modules = ["kmmtest_params"]
in_tree_remove = []

[pull]
insecure = true
TOML

    kmm_tree "$out/image-fail" dummy kmmtest_fail >/dev/null
    store_tree "$out/image-fail" "$root/opt/kmmtest/store-fail" kmmtest >/dev/null
    swap_config "$root/etc/kmm-day1-fail/kmmtest.toml" "" kmmtest_fail
}
