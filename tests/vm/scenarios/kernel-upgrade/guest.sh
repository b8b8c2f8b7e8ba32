# description: kernel upgrade: the store has only the previous kernel's tree; replace does nothing, pull fetches the new kernel's tag, reboots once, the swap works
#
# Boot 1 (the first boot of the new kernel): replace finds no tree for this
# kernel and leaves the in-tree dummy alone (the previous kernel's tree is not
# used); pull resolves the tag of the running kernel, publishes it next to
# the old one and asks for one reboot. Boot 2: replace swaps from the new
# tree; pull is up to date.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
E=/opt/kmmtest/expect
OLD=$(cat $E/old_release)
kmt_check "the store's disk mounts" kmt_disk $S
boots=$(($(cat $S/.kmmtest-boots 2>/dev/null || echo 0) + 1))
echo $boots >$S/.kmmtest-boots
sync
kmt_check "in-tree dummy loaded at boot" modprobe dummy
kmt_log "boot $boots: running $KMT_RELEASE; the store has a tree for $OLD"

if [ "$boots" = 1 ]; then
    kmt_check "the previous kernel's tree is in the store" test -f "$S/kmmtest/$OLD/current/meta.json"
    kmt_run "replace succeeds" $A replace
    kmt_eq "and waits for pull: no tree for this kernel" waiting-for-pull "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "the in-tree dummy is untouched" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    kmt_refuse "nothing was loaded from the previous kernel's tree" kmt_loaded kmmtest_params
    kmt_check "the network comes up" kmt_net
    kmt_run "pull succeeds" $A pull
    kmt_eq "it fetched the new kernel's tag" "$(cat $E/digest)" "$(kmt_json $S/kmmtest/pull.json digest)"
    kmt_match "pull.json names the image for this kernel" "dummy:$KMT_RELEASE" "$(kmt_json $S/kmmtest/pull.json image)"
    kmt_eq "it asked for one reboot" "systemctl reboot" "$(cat /run/systemctl-requests 2>/dev/null)"
    kmt_check "the new kernel's tree is current" test -f "$S/kmmtest/$KMT_RELEASE/current/lib/modules/$KMT_RELEASE/extra/dummy.ko"
    if [ "$KMT_FAILED" = 0 ]; then
        umount $S
        kmt_reboot
    fi
else
    kmt_eq "this is the second boot" 2 "$boots"
    kmt_run "replace succeeds" $A replace
    kmt_eq "dummy is now the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "from the new kernel's digest" "$(cat $E/digest)" "$(kmt_json $S/kmmtest/replace.json digest)"
    kmt_eq "parameters from the config" "6 upgraded" \
        "$(kmt_read /sys/module/kmmtest_params/parameters/count) $(kmt_read /sys/module/kmmtest_params/parameters/label)"
    kmt_eq "kmmtest_fw loaded the new image's firmware" "$(cat $E/fw_line)" \
        "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
    kmt_check "the network comes up" kmt_net
    kmt_run "pull succeeds" $A pull
    kmt_eq "and finds the store up to date" up-to-date "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_refuse "and asks for no reboot" test -e /run/systemctl-requests
    kmt_eq "one reboot counted for the new kernel" 1 \
        "$(tr -d '\n ' <$S/kmmtest/pull.json | sed -n "s/.*\"reboots\":{[^}]*\"$KMT_RELEASE\":\([0-9]*\).*/\1/p")"
fi
