# description: tier 2: a systemd node with the generator's Ignition config pulls and reboots itself, swaps the module before network-pre.target, then boots steady (no pull, no reboot, replace idempotent) and hands over to KMM's worker (modprobe -r / -d) without a fight
#
# Runs from kmmtest-check.service (after the agent's units) on every boot.
# Boot 1: replace found no tree, pull published one and asked systemd for a
# reboot (this check may not even start before the reboot). Boot 2: the
# replace unit swapped dummy before network-pre.target, with its dependency,
# parameters and the store's firmware; pull found the store up to date; the
# check reboots. Boot 3 (steady state): no download, no reboot, and a second
# replace changes nothing; then KMM's worker is simulated (modprobe -d, with
# and without modprobe -r first) and replace run again does not fight it.
# The harness requires exactly three boots.
S=/var/lib/kmm-day1
E=/opt/kmmtest/expect
A=/usr/local/bin/kmm-day1-agent

# The journal's monotonic time (s) of the first line of this boot matching $1.
mono() {
    journalctl -b -o short-monotonic --no-pager | grep -E -- "$1" | head -n 1 |
        sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p'
}
reboots_counted() {
    tr -d '\n ' <$S/kmmtest/pull.json | sed -n "s/.*\"reboots\":{[^}]*\"$KMT_RELEASE\":\([0-9]*\).*/\1/p"
}

# What every boot after the pull must show: the swap by the boot's unit.
swapped() {
    kmt_eq "kmm-day1-replace.service succeeded this boot" active "$(systemctl is-active kmm-day1-replace.service)"
    kmt_eq "replace.json says loaded" loaded "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "from the pulled digest" "$(cat $E/digest)" "$(kmt_json $S/kmmtest/replace.json digest)"
    kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_match "journalctl -u kmm-day1-replace: removed the in-tree dummy stage 1 had loaded" \
        'removed \[dummy\], loaded \[dummy, ' "$(journalctl -b -u kmm-day1-replace.service --no-pager)"
    # modules-load.d names the in-tree dummy (lib/tier2.sh): loaded during the
    # swap, it made the load fail with EEXIST, so the unit is ordered after it.
    t_ml=$(mono 'systemd\[1\]: Finished systemd-modules-load\.service')
    t_rs=$(mono 'systemd\[1\]: Starting kmm-day1-replace\.service')
    kmt_check "systemd-modules-load finished ($t_ml) before replace started ($t_rs)" \
        awk -v a="$t_ml" -v b="$t_rs" 'BEGIN { exit !(a != "" && b != "" && a + 0 <= b + 0) }'
    t_rep=$(mono 'systemd\[1\]: Finished kmm-day1-replace\.service')
    t_pre=$(mono 'systemd\[1\]: Reached target network-pre\.target')
    t_nd=$(mono 'systemd\[1\]: Start(ing|ed) systemd-networkd\.service')
    kmt_log "journal (monotonic s): replace finished $t_rep, network-pre.target reached $t_pre, networkd starting $t_nd"
    kmt_check "the journal shows replace finished before network-pre.target was reached" \
        awk -v a="$t_rep" -v b="$t_pre" 'BEGIN { exit !(a != "" && b != "" && a + 0 < b + 0) }'
    kmt_check "and network-pre.target before systemd-networkd started" \
        awk -v a="$t_pre" -v b="$t_nd" 'BEGIN { exit !(a != "" && b != "" && a + 0 <= b + 0) }'
    kmt_eq "parameters from the config in /sys/module/kmmtest_params/parameters" "5 node" \
        "$(kmt_read /sys/module/kmmtest_params/parameters/count) $(kmt_read /sys/module/kmmtest_params/parameters/label)"
    kmt_check "the dependency kmmtest_dep is loaded and holds kmmtest_user" \
        test -e /sys/module/kmmtest_dep/holders/kmmtest_user
    kmt_eq "kmmtest_user called into it" 42 "$(kmt_read /sys/module/kmmtest_user/parameters/dep_value)"
    kmt_eq "kmmtest_fw loaded the firmware from the store" "$(cat $E/fw_line)" \
        "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
    kmt_eq "pull on this boot found the store up to date" up-to-date "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_eq "pull rebooted once for this kernel" 1 "$(reboots_counted)"
}

if [ "$(kmt_json $S/kmmtest/replace.json result)" = waiting-for-pull ]; then
    # Boot 1, if this runs before the reboot.
    kmt_await_pull_reboot kmmtest
elif [ ! -e /var/lib/kmmtest/steady-reboot ]; then
    kmt_log "boot 2: the swap"
    kmt_check "the agent's units are enabled by Ignition's presets" \
        systemctl is-enabled --quiet kmm-day1-replace.service kmm-day1-pull.service
    swapped
    kmt_run "kmm-day1-agent status reports a healthy node" $A status
    if [ "$KMT_FAILED" = 0 ]; then
        touch /var/lib/kmmtest/steady-reboot
        sync
        kmt_log "rebooting for the steady-state boot"
        systemctl reboot
        sleep 300
        kmt_fail "the steady-state reboot did not happen within 300 s"
    fi
else
    kmt_log "boot 3: steady state"
    swapped
    kmt_eq "pull downloaded nothing" 0 "$(tr -d '\n ' <$S/kmmtest/pull.json | sed -n 's/.*"downloaded_bytes":\([0-9]*\).*/\1/p')"
    kmt_refuse "pull asked for no reboot this boot" \
        sh -c "journalctl -b -u kmm-day1-pull.service --no-pager | grep -q 'rebooting'"
    kmt_eq "the out-of-tree dummy was loaded once this boot" 1 "$(kmt_inits 'dummy: out-of-tree kmm-day1-test build')"
    kmt_run "replace run again succeeds" $A replace
    kmt_eq "and records that everything was already loaded" already-loaded "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "nothing was reloaded" 1 "$(kmt_inits 'dummy: out-of-tree kmm-day1-test build')"
    kmt_eq "kmmtest_fw still has the store's firmware" "$(cat $E/fw_line)" \
        "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"

    # Day-2 hand-over (docs/day2.md): KMM's worker loads the same image's
    # modules with kmod's `modprobe -d <its copy of the image's /opt>`, after
    # `modprobe -r` of the in-tree modules to remove when the Module has any.
    K=/var/lib/kmmtest/kmm-worker
    mkdir -p $K
    cp -a "$S/kmmtest/$KMT_RELEASE/current/lib" $K/
    kmt_check "KMM's worker without inTreeModulesToRemove: modprobe -d succeeds" modprobe -d $K dummy
    kmt_eq "and finds dummy loaded: nothing reloaded" 1 "$(kmt_inits 'dummy: out-of-tree kmm-day1-test build')"
    kmt_check "KMM's worker with inTreeModulesToRemove = [dummy]: modprobe -r dummy" modprobe -r dummy
    kmt_check "then modprobe -d loads its copy of the same build" modprobe -d $K dummy
    kmt_eq "dummy was loaded again, by KMM" 2 "$(kmt_inits 'dummy: out-of-tree kmm-day1-test build')"
    kmt_eq "and is the image's build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_run "replace run again after KMM's load succeeds" $A replace
    kmt_eq "and leaves KMM's module alone (already loaded)" already-loaded "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "no unload, no second load" 2 "$(kmt_inits 'dummy: out-of-tree kmm-day1-test build')"
    kmt_check "dummy is still loaded" grep -q '^dummy ' /proc/modules
fi
