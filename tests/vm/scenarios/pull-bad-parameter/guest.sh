# description: agent pull refuses a parameter the module lacks and a value its type refuses, before publishing or rebooting
#
# Linux 6.1 would load kmmtest_params with `cout=7` and ignore it (the
# driver runs with its defaults while status says loaded), and fail the
# load of `count=seven` at boot. pull checks both against the module's
# .modinfo first: nothing is published, no reboot is asked for.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "the network comes up" kmt_net
kmt_run_fails "pull fails" $A pull

kmt_eq "typo: pull.json says failed" failed "$(kmt_json $S/typo/pull.json result)"
kmt_match "typo: the message names the parameter and the closest one" \
    '`cout` is not a parameter of kmmtest_params \(did you mean `count`\?\); its parameters: .*count' \
    "$(kmt_json $S/typo/pull.json message)"
kmt_refuse "typo: no tree" test -e "$S/typo/$KMT_RELEASE/current"

kmt_eq "badvalue: pull.json says failed" failed "$(kmt_json $S/badvalue/pull.json result)"
kmt_match "badvalue: the message names the value and the type" \
    '`count=seven`: not an integer \(`count` is int\)' "$(kmt_json $S/badvalue/pull.json message)"
kmt_refuse "badvalue: no tree" test -e "$S/badvalue/$KMT_RELEASE/current"

kmt_refuse "no reboot was asked for" test -e /run/systemctl-requests
kmt_check "the in-tree dummy is untouched" modprobe dummy
kmt_eq "and is the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
