# description: kernel upgrade over two real Debian kernels: on the previous one replace swaps from its stored tree; after the reboot into the current one replace waits and loads nothing from the old tree, pull fetches the new kernel's tag and reboots once, then the swap works and the old tree stays
#
# Boot 1 (previous kernel, QEMU process 1): replace swaps dummy from the
# tree a pull for this kernel left; the guest reboots, as the MCO does after
# staging the new OS, and the harness boots the current kernel next.
# Boot 2 (current kernel, the first boot on it): replace finds no tree for
# this kernel and leaves the in-tree dummy alone (the previous kernel's tree
# is not used); pull resolves the tag of the running kernel, publishes it next
# to the old one and asks for one reboot. Boot 3: replace swaps from the new
# tree; pull is up to date; the previous kernel's tree is still in the store,
# for a rollback to that kernel.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
E=/opt/kmmtest/expect
PREV=$(cat $E/prev_release)
CUR=$(cat $E/cur_release)
kmt_check "the store's disk mounts" kmt_disk $S
boots=$(kmt_count_boot $S)
kmt_check "in-tree dummy loaded at boot" modprobe dummy
kmt_log "boot $boots: running $KMT_RELEASE; previous kernel $PREV, current $CUR"

# The release a .ko was built for, from its vermagic (.modinfo strings; the
# kernel refuses a module whose vermagic names another release). Read from
# the file: busybox's modinfo wants the running kernel's modules.dep.
vermagic_release() {
    tr '\000' '\n' <"$1" | sed -n 's/^vermagic=\([^ ]*\).*/\1/p' | head -n 1
}
params() {
    echo "$(kmt_read /sys/module/kmmtest_params/parameters/count) $(kmt_read /sys/module/kmmtest_params/parameters/label)"
}
prev_tree_kept() {
    kmt_eq "the previous kernel's tree is still current for it" "$(cat $E/prev_tree)" \
        "$(readlink "$S/kmmtest/$PREV/current")"
    kmt_check "and complete (meta.json, its dummy.ko)" \
        test -f "$S/kmmtest/$PREV/current/meta.json" -a -f "$S/kmmtest/$PREV/current/lib/modules/$PREV/extra/dummy.ko"
}

if [ "$boots" = 1 ]; then
    kmt_eq "boot 1 runs the previous kernel" "$PREV" "$KMT_RELEASE"
    kmt_check "the previous kernel's tree is in the store" test -f "$S/kmmtest/$PREV/current/meta.json"
    kmt_refuse "the current kernel has no tree yet" test -e "$S/kmmtest/$CUR"
    kmt_eq "the stored dummy.ko was built for this kernel (vermagic)" "$PREV" \
        "$(vermagic_release "$S/kmmtest/$PREV/current/lib/modules/$PREV/extra/dummy.ko")"
    kmt_run "replace succeeds" $A replace
    kmt_eq "replace.json says loaded" loaded "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "from the previous kernel's tree" "$(cat $E/prev_digest)" "$(kmt_json $S/kmmtest/replace.json digest)"
    kmt_eq "dummy is now the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "parameters from the config" "6 upgraded" "$(params)"
    kmt_eq "kmmtest_fw loaded the previous tree's firmware" "$(cat $E/prev_fw_line)" \
        "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
    # The reboot into the new kernel: the harness boots $CUR next.
    if [ "$KMT_FAILED" = 0 ]; then
        umount $S
        kmt_reboot
    fi
elif [ "$boots" = 2 ]; then
    kmt_eq "boot 2 runs the current kernel" "$CUR" "$KMT_RELEASE"
    prev_tree_kept
    kmt_refuse "the current kernel has no tree yet" test -e "$S/kmmtest/$CUR"
    kmt_run "replace succeeds" $A replace
    kmt_eq "and waits for pull: no tree for this kernel" waiting-for-pull "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "the in-tree dummy is untouched" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    kmt_refuse "nothing was loaded from the previous kernel's tree" kmt_loaded kmmtest_params
    kmt_check "the network comes up" kmt_net
    kmt_run "pull succeeds" $A pull
    kmt_eq "pull.json says published" published "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_eq "it fetched the new kernel's tag" "$(cat $E/digest)" "$(kmt_json $S/kmmtest/pull.json digest)"
    kmt_match "pull.json names the image for this kernel" "dummy:$KMT_RELEASE" "$(kmt_json $S/kmmtest/pull.json image)"
    kmt_eq "it asked for one reboot" "systemctl reboot" "$(cat /run/systemctl-requests 2>/dev/null)"
    kmt_check "the new kernel's tree is current" test -f "$S/kmmtest/$CUR/current/lib/modules/$CUR/extra/dummy.ko"
    kmt_eq "and its dummy.ko was built for this kernel (vermagic)" "$CUR" \
        "$(vermagic_release "$S/kmmtest/$CUR/current/lib/modules/$CUR/extra/dummy.ko")"
    prev_tree_kept
    if [ "$KMT_FAILED" = 0 ]; then
        umount $S
        kmt_reboot
    fi
else
    kmt_eq "this is the third boot" 3 "$boots"
    kmt_eq "boot 3 runs the current kernel" "$CUR" "$KMT_RELEASE"
    kmt_run "replace succeeds" $A replace
    kmt_eq "dummy is now the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "from the new kernel's digest" "$(cat $E/digest)" "$(kmt_json $S/kmmtest/replace.json digest)"
    kmt_eq "parameters from the config" "6 upgraded" "$(params)"
    kmt_eq "kmmtest_fw loaded the new image's firmware" "$(cat $E/fw_line)" \
        "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
    kmt_check "the network comes up" kmt_net
    kmt_run "pull succeeds" $A pull
    kmt_eq "and finds the store up to date" up-to-date "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_refuse "and asks for no reboot" test -e /run/systemctl-requests
    kmt_eq "one reboot counted for the new kernel" 1 \
        "$(tr -d '\n ' <$S/kmmtest/pull.json | sed -n "s/.*\"reboots\":{[^}]*\"$KMT_RELEASE\":\([0-9]*\).*/\1/p")"
    prev_tree_kept
fi
