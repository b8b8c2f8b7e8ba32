# description: tier 2: a systemd node with the generator's Ignition config pulls, reboots itself, swaps the module at boot
#
# Runs from kmmtest-check.service (after the agent's units) on every boot.
# Boot 1: replace found no tree, pull published one and asked systemd for a
# reboot (this check may not even start before the reboot). Boot 2: the
# replace unit swapped dummy early in boot; pull found the store up to date.
S=/var/lib/kmm-day1
E=/opt/kmmtest/expect
mkdir -p /var/lib/kmmtest
boots=$(($(cat /var/lib/kmmtest/boots 2>/dev/null || echo 0) + 1))
echo $boots >/var/lib/kmmtest/boots
kmt_log "check run $boots"

if [ "$(kmt_json $S/kmmtest/replace.json result)" = waiting-for-pull ]; then
    # Boot 1, if this runs before the reboot.
    kmt_eq "boot 1: pull published the image" published "$(kmt_json $S/kmmtest/pull.json result)"
    if [ "$KMT_FAILED" = 0 ]; then
        kmt_log "waiting for the reboot pull asked for"
        sleep 300
        kmt_fail "pull's reboot did not happen within 300 s"
    fi
else
    kmt_check "the agent's units are enabled by Ignition's presets" \
        systemctl is-enabled --quiet kmm-day1-replace.service kmm-day1-pull.service
    kmt_eq "kmm-day1-replace.service succeeded this boot" active "$(systemctl is-active kmm-day1-replace.service)"
    kmt_eq "replace.json says loaded" loaded "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "from the pulled digest" "$(cat $E/digest)" "$(kmt_json $S/kmmtest/replace.json digest)"
    kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "parameters from the config" "5 node" \
        "$(kmt_read /sys/module/kmmtest_params/parameters/count) $(kmt_read /sys/module/kmmtest_params/parameters/label)"
    kmt_eq "kmmtest_fw loaded the pulled firmware" "$(cat $E/fw_line)" "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
    kmt_eq "pull on this boot found the store up to date" up-to-date "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_eq "pull rebooted once for this kernel" 1 \
        "$(tr -d '\n ' <$S/kmmtest/pull.json | sed -n "s/.*\"reboots\":{[^}]*\"$KMT_RELEASE\":\([0-9]*\).*/\1/p")"
    kmt_run "kmm-day1-agent status reports a healthy node" /usr/local/bin/kmm-day1-agent status
fi
