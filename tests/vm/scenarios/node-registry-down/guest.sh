# description: tier 2: with the registry down the boot reaches multi-user.target while kmm-day1-pull still retries; the pull then fails within its budget, visibly, without a reboot
#
# The boot must not wait for the pull (issue 22.13): a target is ordered
# after the units it wants unless they have DefaultDependencies=no, and the
# pull unit has it. So multi-user.target is active while the pull is still
# `activating`; with the old unit it became active only once the pull had
# given up. Then the pull ends failed, within its 60 s budget, asks for no
# reboot (the harness requires exactly one boot), and the failure shows in
# systemctl and status.
S=/var/lib/kmm-day1
A=/usr/local/bin/kmm-day1-agent

# Wait up to $2 s for unit $1 to leave state $3 (or to reach it with $4=to).
wait_state() {
    local i=0
    while [ $i -lt $(($2 * 2)) ]; do
        st=$(systemctl is-active "$1")
        if [ "$4" = to ]; then [ "$st" = "$3" ] && return 0; else [ "$st" != "$3" ] && return 0; fi
        sleep 0.5
        i=$((i + 1))
    done
    return 1
}

kmt_eq "kmm-day1-replace.service waited for a pull" waiting-for-pull "$(kmt_json $S/kmmtest/replace.json result)"
kmt_check "multi-user.target still wants the pull" \
    sh -c 'systemctl show -p Wants --value multi-user.target | grep -qw kmm-day1-pull.service'
kmt_refuse "but is not ordered after it" \
    sh -c 'systemctl show -p After --value multi-user.target | grep -qw kmm-day1-pull.service'
kmt_check "multi-user.target is reached" wait_state multi-user.target 50 active to
pull_then=$(systemctl is-active kmm-day1-pull.service)
kmt_eq "while the pull still retries" activating "$pull_then"
kmt_log "$(systemctl status kmm-day1-pull.service --no-pager -n 3 2>&1 | head -n 4)"

kmt_check "the pull ends within its budget" wait_state kmm-day1-pull.service 150 activating
kmt_eq "failed, visibly" failed "$(systemctl is-active kmm-day1-pull.service)"
kmt_eq "pull.json says failed" failed "$(kmt_json $S/kmmtest/pull.json result)"
kmt_match "after retrying until its budget was spent" 'giving up after [0-9]+ attempts \(the pull.s time budget is spent\)' \
    "$(kmt_json $S/kmmtest/pull.json message)"
kmt_capture $A status
kmt_eq "status exits 2 (failed)" 2 "$KMT_RC"
kmt_match "and says to retry the pull" 'next: +retry pull' "$KMT_OUT"
