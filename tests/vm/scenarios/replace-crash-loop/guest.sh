# description: agent replace: a module that panics at load; boots 1 and 2 crash, boot 3 quarantines it
#
# The first two boots each load the out-of-tree dummy and then
# kmmtest_panic, whose init panics: the kernel reboots (panic=1) before
# replace can say anything, so only boots.json, written and fsynced before
# the first load, remembers the attempt. The third boot finds two
# unconfirmed attempts of the same tree (max_unconfirmed_boots = 2), loads
# nothing, and the node stays on its in-tree dummy. No fourth boot: the
# harness asserts exactly three.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "the store's disk mounts" kmt_disk $S
boots=$(kmt_count_boot $S)
kmt_check "in-tree dummy loaded at boot" modprobe dummy

if [ "$boots" -le 2 ]; then
    kmt_log "boot $boots: replace, which loads kmmtest_panic: the kernel must panic"
    $A replace
    kmt_fail "boot $boots: replace returned (exit $?): kmmtest_panic did not take the kernel down"
else
    kmt_eq "this is the third boot" 3 "$boots"
    kmt_run "replace succeeds without loading anything" $A replace
    kmt_match "and says the tree is quarantined" "quarantined $(cat /opt/kmmtest/expect/digest) for kernel $KMT_RELEASE" "$KMT_OUT"
    kmt_match "after two boots that did not finish loading" \
        "2 boots in a row loaded it and never reached the health point \(boot [0-9a-f]{8} at [^:]+:[^:]+:[^:]+: did not finish loading; boot [0-9a-f]{8} at [^;]+: did not finish loading\)" "$KMT_OUT"
    kmt_eq "dummy is the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    kmt_refuse "kmmtest_panic was not loaded" kmt_loaded kmmtest_panic
    kmt_eq "replace.json says quarantined" quarantined "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_run_fails "status fails (a quarantine is a failure to monitoring)" $A status --json
    kmt_match "status --json: quarantined" '"state": "quarantined"' "$KMT_OUT"
    kmt_eq "with two failed attempts" 2 "$(printf '%s\n' "$KMT_OUT" | grep -c '"stage": "loading"')"
    kmt_run_fails "status (text)" $A status
    kmt_match "names the guard" "guard:    quarantined, 2 of 2 unconfirmed boots" "$KMT_OUT"
fi
