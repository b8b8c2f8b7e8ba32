# The checks of the node-upgrade-* scenarios (lib/ostree.sh upgrade_prepare),
# sourced by their guest.sh in kmmtest-check.service on each boot.
#
# Boot 1, the previous kernel B, joined node: kmm-day1-pull publishes B's
# image and does not reboot (joined; status says the swap waits for the
# MCO's reboot); the admin's `systemctl restart kmm-day1-replace` swaps now,
# so B runs the out-of-tree driver. Then the MCD stand-in stages the
# current kernel B' and reboots. Boot 2, B':
#   ok             the replace unit swapped at boot from the tree the staged
#                  pull published in the shutdown; no pull, no reboot
#   registry-down  the staged pull gave up within shutdown_timeout_secs; B'
#                  runs the in-tree driver; the pull after boot (registry
#                  back) publishes and does not reboot: status says the swap
#                  waits for the MCO's next reboot
#   no-image       both pulls failed naming the missing image; no reboot
# The harness requires exactly two boots in every variant.
S=/var/lib/kmm-day1
E=/opt/kmmtest/expect
A=/usr/local/bin/kmm-day1-agent
BOOT=$(cat $E/boot_release)
NEXT=$(cat $E/staged_release)
VARIANT=$(cat $E/variant)
pull_log() { journalctl -b "$1" -u kmm-day1-pull.service --no-pager; }
staged_log() { journalctl -b -1 -u kmm-day1-pull-staged.service --no-pager; }

if [ "$KMT_RELEASE" = "$BOOT" ]; then
    kmt_log "boot 1: kernel $BOOT on a joined node ($VARIANT)"
    kmt_eq "pull published this kernel's image" published "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_match "and did not reboot the joined node" "no reboot for kmmtest: the node has joined the cluster" "$(pull_log 0)"
    kmt_refuse "no reboot was asked for" sh -c "journalctl -b --no-pager | grep -q 'rebooting to load the new modules'"
    kmt_capture $A status
    kmt_match "status: the swap waits for the MCO's reboot" "next: +swap at the next reboot the MCO orders" "$KMT_OUT"
    kmt_check "the admin swaps now: systemctl restart kmm-day1-replace" systemctl restart kmm-day1-replace.service
    kmt_eq "B runs the out-of-tree dummy" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "kmm-day1-pull-staged is active" active "$(systemctl is-active kmm-day1-pull-staged.service)"
    if [ "$VARIANT" = registry-down ]; then
        kmt_log "host: registry-down"
        sleep 3
    fi
    [ "$KMT_FAILED" = 0 ] || kmt_finish
    # The update: staged, then the reboot (the check ends with it).
    systemd-run --no-block --unit kmmtest-update /opt/kmmtest/mcd-update.sh "$NEXT" 1
    exit 0
fi

kmt_eq "boot 2 runs the staged kernel" "$NEXT" "$KMT_RELEASE"
kmt_eq "two boots in the journal: no reboot but the MCD stand-in's" 2 "$(journalctl --list-boots --no-pager -q | wc -l)"
kmt_refuse "nothing asked for a reboot this boot" sh -c "journalctl -b --no-pager | grep -q 'rebooting to load the new modules'"
case $VARIANT in
ok)
    kmt_eq "the finalize stand-in ran after the staged pull (store had the tree)" "$NEXT yes" \
        "$(cut -d' ' -f1,2 /var/lib/kmmtest/finalize.log)"
    kmt_match "journalctl -b -1 -u kmm-day1-pull-staged: published in the reboot's shutdown" \
        "kernel $NEXT of rhcos/[0-9a-f]+\.1: kmmtest: published .*the next boot swaps with no reboot" "$(staged_log)"
    kmt_eq "replace.json says loaded" loaded "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "from the new kernel's image" "$(cat $E/digest)" "$(kmt_json $S/kmmtest/replace.json digest)"
    kmt_eq "dummy is the out-of-tree build on the first boot of $NEXT" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "parameters from the config" "9 upgrade" \
        "$(kmt_read /sys/module/kmmtest_params/parameters/count) $(kmt_read /sys/module/kmmtest_params/parameters/label)"
    kmt_eq "this boot's pull found the store up to date" up-to-date "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_check "the previous kernel's tree is kept (rollback)" test -f "$S/kmmtest/$BOOT/current/meta.json"
    kmt_run "kmm-day1-agent status reports a healthy node" $A status
    ;;
registry-down)
    kmt_eq "the finalize stand-in found no tree: the staged pull failed" "$NEXT no" \
        "$(cut -d' ' -f1,2 /var/lib/kmmtest/finalize.log)"
    kmt_match "journalctl -b -1 -u kmm-day1-pull-staged: failed, bounded by its 20 s budget" \
        "staged pull in [0-9.]+s \(budget 20s\): .*failed.*boots on the in-tree driver" "$(staged_log)"
    secs=$(staged_log | sed -n 's/.*staged pull in \([0-9.]*\)s (budget.*/\1/p' | head -n 1)
    kmt_check "the staged pull took ${secs:-?} s, within 20 s plus a margin" \
        awk -v s="${secs:-999}" 'BEGIN { exit !(s + 0 <= 25) }'
    kmt_eq "replace waited for a pull" waiting-for-pull "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "the new kernel runs the in-tree dummy" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    kmt_eq "the pull after boot published (registry back)" published "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_match "and did not reboot the joined node" "no reboot for kmmtest: the node has joined the cluster" "$(pull_log 0)"
    kmt_capture $A status
    kmt_match "status: the swap waits for the MCO's reboot" "next: +swap at the next reboot the MCO orders" "$KMT_OUT"
    ;;
no-image)
    kmt_eq "the finalize stand-in found no tree" "$NEXT no" "$(cut -d' ' -f1,2 /var/lib/kmmtest/finalize.log)"
    kmt_match "journalctl -b -1 -u kmm-day1-pull-staged: the missing image is named" \
        "kmmtest/dummy:$NEXT.*(not found|was not found)" "$(staged_log)"
    kmt_eq "replace waited for a pull" waiting-for-pull "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_eq "the pull after boot failed" failed "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_capture $A status
    kmt_eq "status exits 2 (failed)" 2 "$KMT_RC"
    kmt_match "status names the missing image" "dummy:$NEXT.*not found" "$KMT_OUT"
    ;;
esac
