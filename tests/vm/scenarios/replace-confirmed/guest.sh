# description: agent replace + confirm: a good module never quarantines; confirm resets the count, one cut-off boot is forgiven
#
# Boot 1 swaps and confirms (`kmm-day1-agent confirm`). Boot 2 swaps and is
# cut off before any health point (sysrq reboot: no sync, as a power cut).
# Boot 3 finds one unconfirmed boot, below max_unconfirmed_boots = 2 (and
# only one, because boot 1's confirm reset the count), swaps again, and the
# real `pull` confirms it at its start, as kmm-day1-pull.service would.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
B=$S/kmmtest/boots.json
kmt_check "the store's disk mounts" kmt_disk $S
boots=$(kmt_count_boot $S)
kmt_check "in-tree dummy loaded at boot" modprobe dummy
boot_id=$(cat /proc/sys/kernel/random/boot_id)

case $boots in
1)
    kmt_run "boot 1: replace swaps" $A replace
    kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_match "boots.json records this boot as loaded" '"stage": "loaded"' "$(cat $B)"
    kmt_run "confirm" $A confirm
    kmt_match "says this boot is confirmed" "kmmtest: this boot is confirmed healthy: dummy, kmmtest_params still loaded; the crash-loop count is reset" "$KMT_OUT"
    kmt_eq "boots.json: confirmed by this boot" "$boot_id" "$(kmt_json $B confirmed_boot)"
    kmt_match "and no unconfirmed boot is left" '"unconfirmed": \[\]' "$(cat $B)"
    [ "$KMT_FAILED" = 0 ] && umount $S && kmt_reboot
    ;;
2)
    kmt_run "boot 2: replace swaps" $A replace
    kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    if [ "$KMT_FAILED" = 0 ]; then
        kmt_log "boot 2: cut off before the health point (sysrq reboot, no sync)"
        echo 1 >/proc/sys/kernel/sysrq
        echo b >/proc/sysrq-trigger
    fi
    ;;
*)
    kmt_eq "this is the third boot" 3 "$boots"
    kmt_run_fails "status before replace (pulled, not loaded)" $A status --json
    kmt_eq "one unconfirmed boot (boot 2's), not two: boot 1's confirm reset the count" 1 \
        "$(printf '%s\n' "$KMT_OUT" | grep -c '"stage": "loaded"')"
    kmt_run "boot 3: replace swaps again (1 of 2 is below the limit)" $A replace
    kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_refuse "no quarantine" sh -c "grep -q quarantined $S/kmmtest/replace.json"
    kmt_run "pull (the default health point) from the image's OCI layout" $A pull --no-reboot --oci-layout /opt/kmmtest/oci
    kmt_match "pull confirmed the boot" "kmmtest: this boot is confirmed healthy" "$KMT_OUT"
    kmt_eq "boots.json: confirmed by this boot" "$boot_id" "$(kmt_json $B confirmed_boot)"
    kmt_match "the count is reset" '"unconfirmed": \[\]' "$(cat $B)"
    kmt_run "status" $A status
    kmt_match "status: loaded" "kmmtest: loaded \(ok\)" "$KMT_OUT"
    ;;
esac
