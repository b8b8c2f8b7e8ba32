# description: agent pull under a policy.json that requires a cosign signature: the unsigned image is refused (nothing published, the in-tree dummy stays), the signed one is published and swapped in
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "the network comes up" kmt_net
kmt_check "in-tree dummy loaded at boot" modprobe dummy

cp /opt/kmmtest/unsigned.toml /etc/kmm-day1/drv.toml
kmt_run_fails "pull of the unsigned image fails" $A pull
kmt_eq "pull.json says refused" refused "$(kmt_json $S/drv/pull.json result)"
kmt_match "the message names the scope and the missing signature" \
    'refused by /etc/containers/policy.json \(docker scope `10\.0\.2\.100:5000/kmmtest`\): no signature' \
    "$(kmt_json $S/drv/pull.json message)"
kmt_refuse "no tree" test -e "$S/drv/$KMT_RELEASE/current"
kmt_run "replace has nothing to swap" $A replace
kmt_eq "dummy is still the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
kmt_run_fails "status is not healthy" $A status
kmt_match "status says what to do" "next: +blocked: the node's signature policy refused the image" "$KMT_OUT"

cp /opt/kmmtest/dummy.toml /etc/kmm-day1/drv.toml
kmt_run "pull of the signed image succeeds" $A pull
kmt_match "and names the key that verified it" \
    'is allowed by /etc/containers/policy.json \(docker scope `10\.0\.2\.100:5000/kmmtest`\): sigstoreSigned \(key [0-9a-f]{16}\)' "$KMT_OUT"
kmt_eq "pull.json says published" published "$(kmt_json $S/drv/pull.json result)"
kmt_eq "the signed digest" "$(cat /opt/kmmtest/digest)" "$(kmt_json $S/drv/pull.json digest)"
kmt_run "replace succeeds" $A replace
kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
kmt_refuse "no reboot was asked for" test -e /run/systemctl-requests
