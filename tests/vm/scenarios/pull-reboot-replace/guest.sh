# description: agent pull from the host registry over guestfwd, reboot, replace from the stored tree
#
# The first-boot flow of a node, with the test doing what the units do:
# boot 1 has no tree (replace waits), pulls the image, which asks for a
# reboot (a systemctl stand-in records it) and reboots; boot 2
# swaps the module early from the store on disk; a later pull finds the
# store up to date.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "the store's disk mounts" kmt_disk $S
boots=$(($(cat $S/.kmmtest-boots 2>/dev/null || echo 0) + 1))
echo $boots >$S/.kmmtest-boots
sync
kmt_check "in-tree dummy loaded at boot" modprobe dummy

if [ "$boots" = 1 ]; then
    kmt_run "replace before any pull succeeds" $A replace
    kmt_eq "and waits for pull" waiting-for-pull "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_check "the network comes up" kmt_net
    kmt_run "pull succeeds" $A pull
    kmt_eq "pull.json says published" published "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_eq "the digest is the manifest the host pushed" "$(cat /opt/kmmtest/expect/digest)" \
        "$(kmt_json $S/kmmtest/pull.json digest)"
    kmt_eq "pull asked for a reboot (after_pull = reboot)" "systemctl reboot" "$(cat /run/systemctl-requests 2>/dev/null)"
    kmt_eq "pull.json counts the reboot for this kernel" 1 \
        "$(tr -d '\n ' <$S/kmmtest/pull.json | sed -n "s/.*\"reboots\":{[^}]*\"$KMT_RELEASE\":\([0-9]*\).*/\1/p")"
    T=$S/kmmtest/$KMT_RELEASE/current
    kmt_check "the tree has the module" test -f "$T/lib/modules/$KMT_RELEASE/extra/dummy.ko"
    kmt_check "the tree has the image's modules.dep" test -s "$T/lib/modules/$KMT_RELEASE/modules.dep"
    kmt_eq "the tree has the image's firmware" "$(cat /opt/kmmtest/expect/fw_line)" "$(head -n 1 "$T/firmware/kmmtest/kmmtest_fw.bin")"
    kmt_eq "the in-tree dummy is still loaded (the swap waits for the reboot)" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    kmt_refuse "no blob is left behind" sh -c "ls $S/blobs/sha256/* 2>/dev/null | grep -q ."
    if [ "$KMT_FAILED" = 0 ]; then
        umount $S
        kmt_reboot
    fi
else
    kmt_eq "this is the second boot" 2 "$boots"
    kmt_run "replace succeeds from the pulled tree" $A replace
    kmt_eq "dummy is now the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "parameters from the config" "3 pulled" \
        "$(kmt_read /sys/module/kmmtest_params/parameters/count) $(kmt_read /sys/module/kmmtest_params/parameters/label)"
    kmt_eq "kmmtest_fw loaded the pulled firmware" "$(cat /opt/kmmtest/expect/fw_line)" \
        "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
    kmt_eq "replace.json names the pulled digest" "$(cat /opt/kmmtest/expect/digest)" \
        "$(kmt_json $S/kmmtest/replace.json digest)"
    kmt_check "the network comes up" kmt_net
    kmt_run "a second pull succeeds" $A pull
    kmt_eq "and finds the store up to date" up-to-date "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_refuse "and asks for no reboot" test -e /run/systemctl-requests
fi
