# description: agent replace: a module whose init never returns; a watchdog resets boots 1 and 2, boot 3 quarantines it
#
# As replace-crash-loop, with a hang instead of a panic: replace blocks in
# finit_module forever, and only the (host-side) watchdog ends the boot.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "the store's disk mounts" kmt_disk $S
boots=$(kmt_count_boot $S)
kmt_check "in-tree dummy loaded at boot" modprobe dummy

kmt_log "host: arm-$boots."
if [ "$boots" -le 2 ]; then
    $A replace
    kmt_fail "boot $boots: replace returned (exit $?): kmmtest_hang's init should never return"
else
    kmt_run "replace succeeds without loading anything" $A replace
    kmt_log "host: disarm-$boots."
    kmt_match "and says the tree is quarantined" "quarantined $(cat /opt/kmmtest/expect/digest)" "$KMT_OUT"
    kmt_match "after two boots that never finished loading" "2 boots in a row" "$KMT_OUT"
    kmt_eq "dummy is the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    kmt_refuse "kmmtest_hang was not loaded" kmt_loaded kmmtest_hang
    kmt_run_fails "status fails" $A status --json
    kmt_match "status --json: quarantined" '"state": "quarantined"' "$KMT_OUT"
    kmt_eq "with two failed attempts" 2 "$(printf '%s\n' "$KMT_OUT" | grep -c '"stage": "loading"')"
fi
