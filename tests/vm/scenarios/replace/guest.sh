# description: agent replace: waiting for pull, dry run, swap with deps+params+firmware, idempotence
#
# The node's sequence: the in-tree dummy is loaded at boot; replace runs with
# no tree (waits for pull), then with one: dry run changes nothing, the real
# run swaps dummy for the out-of-tree build and loads kmmtest_user (with its
# dependency kmmtest_dep from the image's modules.dep), kmmtest_params with
# the config's parameters and kmmtest_fw with the image's firmware; a second
# run changes nothing.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
STATE=$S/kmmtest/replace.json
kmt_check "in-tree dummy loaded at boot" modprobe dummy

kmt_run "replace with an empty store succeeds" $A replace
kmt_eq "and records that it waits for pull" waiting-for-pull "$(kmt_json $STATE result)"
kmt_eq "the in-tree dummy is untouched" "<missing>" "$(kmt_read /sys/module/dummy/version)"

cp -a /opt/kmmtest/store/. $S/
kmt_capture $A replace --dry-run
kmt_eq "replace --dry-run exits 1 like status on a pulled, not yet swapped, node" 1 "$KMT_RC"
kmt_match "the dry run reports status's state" 'kmmtest: pulled \(degraded\)' "$KMT_OUT"
kmt_match "the plan removes the in-tree dummy" 'remove:.* dummy' "$KMT_OUT"
kmt_before "the plan loads kmmtest_dep before kmmtest_user" ' kmmtest_dep ' ' kmmtest_user ' "$KMT_OUT"
kmt_eq "the dry run changed nothing" "<missing>" "$(kmt_read /sys/module/dummy/version)"
kmt_refuse "the dry run loaded nothing" kmt_loaded kmmtest_user

kmt_run "replace succeeds" $A replace
kmt_full_swap_loaded
kmt_eq "kmmtest_fw loaded the image's firmware" "$(cat /opt/kmmtest/expect/fw_line)" \
    "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
kmt_eq "replace.json says loaded" loaded "$(kmt_json $STATE result)"
kmt_eq "replace.json names the tree's digest" "$(cat /opt/kmmtest/expect/digest)" "$(kmt_json $STATE digest)"

kmt_run "a second replace succeeds" $A replace
kmt_eq "and records that everything was already loaded" already-loaded "$(kmt_json $STATE result)"
kmt_eq "the out-of-tree dummy was loaded once, not reloaded" 1 "$(kmt_inits 'dummy: out-of-tree kmm-day1-test build')"
kmt_eq "dummy is still the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"

# What an administrator sees through `oc debug node/…` after the swap: the
# text and the JSON of status, on the real kernel (its output is in the
# serial log).
kmt_run "status exits 0 on a swapped node" $A status
kmt_match "status says the config is loaded and up to date" 'kmmtest: loaded \(ok\)' "$KMT_OUT"
kmt_eq "srcversions of the image's .ko files to compare with" 4 "$(wc -l </opt/kmmtest/expect/srcversions)"
while read -r m sv; do
    kmt_eq "the kernel runs the image's $m.ko (srcversion in sysfs)" "$sv" "$(kmt_read /sys/module/$m/srcversion)"
    kmt_match "status shows $m's image and running srcversion, both the .ko's" \
        "module: +$m image srcversion $sv, running $sv \(sysfs\)" "$KMT_OUT"
done </opt/kmmtest/expect/srcversions
kmt_run "replace --dry-run exits 0 like status on a swapped node" $A replace --dry-run
kmt_match "the dry run reports status's state" 'kmmtest: loaded \(ok\)' "$KMT_OUT"
kmt_run "status --json exits 0" $A status --json
printf '%s' "$KMT_OUT" >/tmp/status.json
kmt_eq "status --json: state" loaded "$(kmt_json /tmp/status.json state)"
kmt_eq "status --json: health" ok "$(kmt_json /tmp/status.json health)"
