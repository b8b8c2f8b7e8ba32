# description: tier 2: a module that fails at boot is rolled back, the node boots on, and pull does not reboot again
#
# Boot 1 pulls and reboots; boot 2's replace fails on kmmtest_fail and puts
# the in-tree dummy back; the boot goes on with the unit failed
# (visible in systemctl), and pull, finding the store up to date, asks for
# no further reboot: no reboot loop (the harness also requires exactly two
# boots).
S=/var/lib/kmm-day1
if [ "$(kmt_json $S/kmmtest/replace.json result)" = waiting-for-pull ]; then
    kmt_await_pull_reboot kmmtest
else
    kmt_eq "kmm-day1-replace.service failed this boot" failed "$(systemctl is-active kmm-day1-replace.service)"
    kmt_eq "replace.json says rolled back" rolled-back "$(kmt_json $S/kmmtest/replace.json result)"
    kmt_match "and names the module that failed" kmmtest_fail "$(kmt_json $S/kmmtest/replace.json message)"
    kmt_check "dummy is loaded" kmt_loaded dummy
    kmt_eq "and it is the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
    # Reloaded as modprobe loads it, with the node's modprobe.d options:
    # systemd's `options dummy numdummies=0` means no dummy0, which the
    # driver makes when loaded without options.
    kmt_check "systemd's modprobe.d sets numdummies=0" \
        grep -qx 'options dummy numdummies=0' /usr/lib/modprobe.d/systemd.conf
    kmt_refuse "and the reload applied it: no dummy0 link" ip link show dummy0
    # systemd's modprobe.d sets numdummies=0: no dummy0; the driver works if
    # it makes a link.
    kmt_check "and working: it makes a dummy link" ip link add kmmtest0 type dummy
    # This unit runs before journald here (no systemd initramfs): journald
    # reads the agent's lines after it has exited, so only the agent's own
    # OBJECT_SYSTEMD_UNIT field ties them to the unit for `journalctl -u`.
    j=$(journalctl -b -u kmm-day1-replace.service --no-pager)
    # shellcheck disable=SC2016 # the backquotes are the agent's
    kmt_match "journalctl -u kmm-day1-replace names the failed module and the rollback" \
        'loading `kmmtest_fail`.*rolled back: in-tree dummy reloaded.*the node is as before' "$j"
    kmt_match "systemctl status kmm-day1-replace shows it too" 'rolled back: in-tree dummy reloaded' \
        "$(systemctl status kmm-day1-replace.service --no-pager -l -n 20)"
    kmt_match "and the line carries the config and outcome fields" 'KMM_DAY1_CONFIG=kmmtest' \
        "$(journalctl -b -u kmm-day1-replace.service -o verbose --no-pager MESSAGE_ID=19f395db49a942f0a0c31f30e8241d18)"
    kmt_refuse "kmmtest_fail is not loaded" kmt_loaded kmmtest_fail
    # multi-user.target itself waits for this check unit; basic.target and
    # network-online.target come after the replace unit in the boot.
    kmt_eq "the boot went on past the failed unit" "active active" \
        "$(systemctl is-active basic.target) $(systemctl is-active network-online.target)"
    kmt_eq "pull on this boot found the store up to date" up-to-date "$(kmt_json $S/kmmtest/pull.json result)"
    kmt_eq "pull rebooted once for this kernel, not again" 1 \
        "$(tr -d '\n ' <$S/kmmtest/pull.json | sed -n "s/.*\"reboots\":{[^}]*\"$KMT_RELEASE\":\([0-9]*\).*/\1/p")"
fi
