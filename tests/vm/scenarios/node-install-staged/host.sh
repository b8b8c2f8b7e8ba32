# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A node's install with the first-boot pivot (docs/upgrades.md): the guest
# first boots the previous Debian kernel (the boot image's), the MCD
# stand-in stages the current one and reboots, and the harness boots that
# next. The registry serves an image for each kernel, so "nothing pulled
# for the boot-image kernel" is the agent's choice, not a missing tag.
# KMMTEST_INSTALL_FLOW=old (bench/vm.sh) masks kmm-day1-pull-staged: the
# flow before it, where the pull after the pivot reboots once more.
# shellcheck source=/dev/null # lib/ostree.sh, checked on its own
. "$VM_DIR/lib/ostree.sh"
SCN_TIER=2
SCN_AGENT=1
SCN_KERNELS=("$PREV_RELEASE" "$CUR_RELEASE")
SCN_BOOTS=2
[[ ${KMMTEST_INSTALL_FLOW:-new} != old ]] || SCN_BOOTS=3
SCN_TIMEOUT=600

scenario_prepare() {
    local root=$1 out=$3 o=$1/opt/kmmtest/overlay
    mkdir -p "$o/opt/kmmtest/expect"
    use_kernel "$PREV_RELEASE"
    serve_image "$out" dummy kmmtest_params kmmtest_fw >/dev/null
    use_kernel "$CUR_RELEASE"
    kmm_tree "$out/cur-src" dummy kmmtest_params kmmtest_fw >"$o/opt/kmmtest/expect/fw_line"
    oci_image "$out/cur-src" "$out/oci" "$CUR_RELEASE" >&2
    push_image "$out/oci" "$CUR_RELEASE" kmmtest/dummy >"$o/opt/kmmtest/expect/digest"
    echo "$PREV_RELEASE" >"$o/opt/kmmtest/expect/boot_release"
    echo "$CUR_RELEASE" >"$o/opt/kmmtest/expect/staged_release"
    echo "${KMMTEST_INSTALL_FLOW:-new}" >"$o/opt/kmmtest/expect/flow"
    tier2_add_kernel_modules "$o" "$PREV_RELEASE"
    ostree_stand_ins "$o" "$CUR_RELEASE"
    printf '%s\n' "$KMMTEST_TIMELINE" >"$o/opt/kmmtest/timeline.sh"
    dummy_pull_config "$out/cfg" 8 staged
    mv "$out/cfg/etc/kmm-day1/kmmtest.toml" "$out/kmmtest.toml"
    tier2_ignition kmmtest "$out/kmmtest.toml" "$o"
    # After Ignition, which writes the unit file this mask replaces.
    if [[ ${KMMTEST_INSTALL_FLOW:-new} == old ]]; then
        ln -sfn /dev/null "$o/etc/systemd/system/kmm-day1-pull-staged.service"
    fi
}

scenario_cleanup() {
    registry_stop
}
