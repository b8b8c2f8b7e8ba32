# description: agent replace: a module whose init fails, the in-tree dummy comes back
A=/usr/local/bin/kmm-day1-agent
STATE=/var/lib/kmm-day1/kmmtest/replace.json
kmt_check "in-tree dummy loaded at boot" modprobe dummy

kmt_run_fails "replace fails" $A replace
kmt_match "and names the module that failed" 'kmmtest_fail' "$KMT_OUT"
kmt_match "the out-of-tree dummy had been loaded before the failure" 'dummy: out-of-tree kmm-day1-test build' "$(dmesg)"
kmt_check "dummy is loaded again" kmt_loaded dummy
kmt_eq "and it is the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
kmt_refuse "kmmtest_fail is not loaded" kmt_loaded kmmtest_fail
kmt_eq "replace.json says rolled back" rolled-back "$(kmt_json $STATE result)"
