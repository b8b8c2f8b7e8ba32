# description: agent pull with the registry down at boot: retries within its budget, fails cleanly (no reboot, nothing half-written); the next boot's pull succeeds
#
# The pull unit's budget is TimeoutSec=900 (840 s of retries); a drop-in that
# shortens it sets KMM_DAY1_PULL_BUDGET_SECS too, here 20 s. Boot 1: the
# registry is down (the forward's far end refuses), replace waits, pull
# retries until its budget and fails; no reboot is asked and the store holds
# no tree, no temp directory, no partial blob. The registry comes back while
# the node reboots; boot 2's pull publishes and asks for the one reboot.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
BUDGET=20
kmt_check "the store's disk mounts" kmt_disk $S
boots=$(($(cat $S/.kmmtest-boots 2>/dev/null || echo 0) + 1))
echo $boots >$S/.kmmtest-boots
sync
kmt_check "in-tree dummy loaded at boot" modprobe dummy
kmt_check "the network comes up" kmt_net

if [ "$boots" = 1 ]; then
    kmt_run "replace before any pull succeeds" $A replace
    kmt_eq "and waits for pull" waiting-for-pull "$(kmt_json $S/kmmtest/replace.json result)"
    t0=$(date +%s)
    kmt_run_fails "pull with the registry down fails" env KMM_DAY1_PULL_BUDGET_SECS=$BUDGET $A pull
    t=$(($(date +%s) - t0))
    kmt_log "pull gave up after ${t}s (budget ${BUDGET}s)"
    tries=$(printf '%s\n' "$KMT_OUT" | grep -c 'attempt [0-9]* failed.*retrying in')
    kmt_check "it retried with backoff ($tries retries)" [ "$tries" -ge 3 ]
    kmt_check "and stopped within its budget (${t}s of ${BUDGET}s)" [ "$t" -le "$BUDGET" ]
    kmt_match "saying the budget is spent" 'giving up after [0-9]+ attempts \(the pull.s time budget is spent\)' "$KMT_OUT"
    kmt_eq "pull.json says failed" failed "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_match "and names the registry" '10\.0\.2\.100:5000' "$(kmt_json $S/kmmtest/pull.json message)"
    kmt_refuse "no reboot was asked" test -e /run/systemctl-requests
    kmt_refuse "no tree is current" test -e "$S/kmmtest/$KMT_RELEASE/current"
    left=$(find $S -mindepth 1 ! -name .kmmtest-boots ! -name '*.json' ! -name lost+found ! -path "$S/lost+found/*" \
        \( -type f -o -name 'sha256-*' -o -name '*tmp*' \) | grep -v -e '/\.lock$' -e '/lock$')
    kmt_eq "nothing half-written in the store (no tree, temp dir or blob)" "" "$left"
    kmt_eq "the in-tree dummy is untouched" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    if [ "$KMT_FAILED" = 0 ]; then
        kmt_log "host: registry-up"
        umount $S
        kmt_reboot
    fi
else
    kmt_eq "this is the second boot" 2 "$boots"
    i=0
    until wget -q -O /dev/null http://10.0.2.100:5000/v2/ 2>/dev/null || [ $i -ge 60 ]; do
        sleep 0.5
        i=$((i + 1))
    done
    kmt_run "the next boot's pull succeeds" $A pull
    kmt_eq "pull.json says published" published "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_eq "the digest is the manifest the host pushed" "$(cat /opt/kmmtest/expect/digest)" \
        "$(kmt_json $S/kmmtest/pull.json digest)"
    kmt_eq "it asked for one reboot" "systemctl reboot" "$(cat /run/systemctl-requests 2>/dev/null)"
    kmt_run "replace (as after that reboot) swaps dummy" $A replace
    kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "kmmtest_fw loaded the pulled firmware" "$(cat /opt/kmmtest/expect/fw_line)" \
        "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
fi
