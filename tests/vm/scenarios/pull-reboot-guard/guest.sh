# description: reboot-loop guard: an image that never loads, republished on every boot, reboots the node max_reboots_per_kernel (2) times, then pull stops asking
#
# Each boot does what the units do: replace (fails from boot 2 on, rolling
# back to the in-tree dummy), then pull of the tag, which moved to a new
# broken build since the last boot (the guest points the config at the next
# pre-pushed build: b1, b2, b3). Boots 1 and 2 publish and reboot (counted
# 1, 2); boot 3 publishes too, but the guard refuses a third reboot: pull
# fails naming max_reboots_per_kernel and asks for nothing. The harness
# requires exactly three boots.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
E=/opt/kmmtest/expect
kmt_check "the store's disk mounts" kmt_disk $S
boots=$(($(cat $S/.kmmtest-boots 2>/dev/null || echo 0) + 1))
echo $boots >$S/.kmmtest-boots
mkdir -p /etc/kmm-day1
cp $E/kmmtest$boots.toml /etc/kmm-day1/kmmtest.toml
sync
kmt_check "in-tree dummy loaded at boot" modprobe dummy
kmt_log "boot $boots: the tag now points at build b$boots"

if [ "$boots" = 1 ]; then
    kmt_run "replace before any pull succeeds" $A replace
else
    kmt_run_fails "replace of the broken build fails" $A replace
    kmt_eq "replace.json says rolled back" rolled-back "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "the in-tree dummy is back" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    kmt_check "and loaded" kmt_loaded dummy
fi
kmt_check "the network comes up" kmt_net
reboots() {
    tr -d '\n ' <$S/kmmtest/pull.json | sed -n "s/.*\"reboots\":{[^}]*\"$KMT_RELEASE\":\([0-9]*\).*/\1/p"
}
if [ "$boots" -le 2 ]; then
    kmt_run "pull of build b$boots succeeds" $A pull
    kmt_eq "and publishes it" "$(cat $E/digest$boots)" "$(kmt_json $S/kmmtest/pull.json digest)"
    kmt_eq "it asked for a reboot" "systemctl reboot" "$(cat /run/systemctl-requests 2>/dev/null)"
    kmt_eq "reboot $boots is counted for this kernel" "$boots" "$(reboots)"
    if [ "$KMT_FAILED" = 0 ]; then
        umount $S
        kmt_reboot
    fi
else
    kmt_run_fails "pull of build b3 stops at the guard" $A pull
    kmt_match "naming max_reboots_per_kernel" 'already rebooted 2 times.*max_reboots_per_kernel = 2' "$KMT_OUT"
    kmt_refuse "it asked for no reboot" test -e /run/systemctl-requests
    kmt_eq "the count stays at 2" 2 "$(reboots)"
    kmt_match "pull.json records the guard" '"reboot_guard": *true' "$(cat $S/kmmtest/pull.json)"
    kmt_eq "the in-tree dummy is still loaded" "<missing>" "$(kmt_read /sys/module/dummy/version)"
fi
