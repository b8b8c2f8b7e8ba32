# description: agent pull with after_pull = live swaps the module at once, without a reboot
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "in-tree dummy loaded at boot" modprobe dummy
kmt_check "the network comes up" kmt_net
kmt_run "pull succeeds" $A pull
kmt_eq "pull.json says published" published "$(kmt_json $S/kmmtest/pull.json result)"
kmt_eq "dummy is the out-of-tree build right away" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
kmt_eq "kmmtest_user and its dependency are loaded" 42 "$(kmt_read /sys/module/kmmtest_user/parameters/dep_value)"
kmt_eq "replace.json says loaded, from the pulled digest" "loaded $(cat /opt/kmmtest/expect/digest)" \
    "$(kmt_json $S/kmmtest/replace.json result) $(kmt_json $S/kmmtest/replace.json digest)"
kmt_refuse "no reboot was asked for" test -e /run/systemctl-requests
