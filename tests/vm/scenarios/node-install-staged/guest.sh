# description: install with the first-boot pivot: the staged pull fetches the cluster kernel's image in the pivot's shutdown, so its first boot swaps the module; exactly one reboot (the MCD stand-in's), nothing pulled for the boot-image kernel
#
# Boot 1 (the boot-image kernel, before the pivot; run by the MCD stand-in
# before it stages, lib/ostree.sh): kmm-day1-pull is
# skipped (Ignition's encapsulated config is there), kmm-day1-pull-staged is
# active with nothing staged, the store is empty. Then the MCD stand-in
# stages the cluster kernel and reboots; kmm-day1-pull-staged's stop pulls
# for it before the ostree-finalize stand-in runs. Boot 2 (the cluster
# kernel's first): kmm-day1-replace swapped at boot from that tree; the pull
# is up to date and asks for no reboot. The harness counts two boots.
# With KMMTEST_INSTALL_FLOW=old (bench only) the staged unit is masked and
# the pull of boot 2 reboots: three boots.
S=/var/lib/kmm-day1
E=/opt/kmmtest/expect
A=/usr/local/bin/kmm-day1-agent
BOOT=$(cat $E/boot_release)
NEXT=$(cat $E/staged_release)
FLOW=$(cat $E/flow)
# shellcheck source=/dev/null # written by host.sh (lib/ostree.sh KMMTEST_TIMELINE)
. /opt/kmmtest/timeline.sh

if [ "$KMT_RELEASE" = "$BOOT" ]; then
    # Run by the MCD stand-in before it pivots (lib/ostree.sh); the check
    # unit, ordered after the pivot, may only start in its shutdown.
    [ "${KMMTEST_PIVOT:-}" = 1 ] || exit 0
    kmt_log "boot 1: the boot-image kernel $BOOT, before the pivot"
    kmt_eq "kmm-day1-pull did not run before the pivot" inactive "$(systemctl is-active kmm-day1-pull.service)"
    if [ "$FLOW" = new ]; then
        kmt_eq "kmm-day1-pull-staged is active, so its stop runs at the pivot" active "$(systemctl is-active kmm-day1-pull-staged.service)"
    fi
    kmt_refuse "nothing is staged yet" test -e /run/ostree/staged-deployment
    kmt_refuse "nothing was pulled for the boot-image kernel" test -e "$S/kmmtest/$BOOT"
    # The MCD stand-in pivots next and reboots; a failure ends here.
    [ "$KMT_FAILED" = 0 ] || kmt_finish
    exit 0
fi

kmt_eq "this boot runs the staged kernel" "$NEXT" "$KMT_RELEASE"
if [ "$FLOW" = old ] && [ "$(kmt_json $S/kmmtest/replace.json result)" = waiting-for-pull ]; then
    # The flow before the staged pull: this boot's pull reboots.
    kmt_await_pull_reboot kmmtest
fi
kmt_eq "kmm-day1-replace.service succeeded this boot" active "$(systemctl is-active kmm-day1-replace.service)"
kmt_eq "replace.json says loaded" loaded "$(kmt_json $S/kmmtest/replace.json result)"
kmt_eq "from the image for this kernel" "$(cat $E/digest)" "$(kmt_json $S/kmmtest/replace.json digest)"
kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
kmt_eq "parameters from the config" "8 staged" \
    "$(kmt_read /sys/module/kmmtest_params/parameters/count) $(kmt_read /sys/module/kmmtest_params/parameters/label)"
kmt_eq "kmmtest_fw loaded the image's firmware" "$(cat $E/fw_line)" "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
kmt_refuse "the store has no tree for the boot-image kernel" test -e "$S/kmmtest/$BOOT"
if [ "$FLOW" = new ]; then
    kmt_eq "the finalize stand-in ran after the staged pull (store had the tree)" "$NEXT yes" \
        "$(cut -d' ' -f1,2 /var/lib/kmmtest/finalize.log)"
    kmt_match "journalctl -b -1 -u kmm-day1-pull-staged: published in the pivot's shutdown" \
        "kernel $NEXT of rhcos/[0-9a-f]+\.0: kmmtest: published .*the next boot swaps with no reboot" \
        "$(journalctl -b -1 -u kmm-day1-pull-staged.service --no-pager)"
    kmt_eq "the staged pull's result is kept for that kernel" published "$(kmt_json "$S/kmmtest/$NEXT/pull.json" result)"
    kmt_eq "this boot's pull found the store up to date" up-to-date "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_refuse "and asked for no reboot" \
        sh -c "journalctl -b -u kmm-day1-pull.service --no-pager | grep -q 'rebooting'"
    kmt_eq "two boots in the journal: one reboot, the MCD stand-in's" 2 "$(journalctl --list-boots --no-pager -q | wc -l)"
else
    kmt_eq "three boots in the journal: the pivot and the pull's reboot" 3 "$(journalctl --list-boots --no-pager -q | wc -l)"
fi
kmt_run "kmm-day1-agent status reports a healthy node" $A status
timeline "$FLOW"
