# description: agent replace on a node without the module's device: nothing swapped, the in-tree dummy stays, status no-device (exit 0)
A=/usr/local/bin/kmm-day1-agent
STATE=/var/lib/kmm-day1/kmmtest/replace.json
kmt_check "in-tree dummy loaded at boot" modprobe dummy
kmt_refuse "no PCI device of vendor 0xabcd" grep -qi '^pci:v0000ABCD' /sys/bus/pci/devices/*/modalias

kmt_run "replace succeeds" $A replace
kmt_match "and says no device matches" \
    'no device on this node matches the modules. 1 device alias \(e.g. `pci:v0000ABCDd0000EF01sv\*sd\*bc\*sc\*i\*`\): not swapping, the in-tree driver stays' "$KMT_OUT"
kmt_eq "dummy is still the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
kmt_refuse "kmmtest_nodev is not loaded" kmt_loaded kmmtest_nodev
kmt_eq "replace.json says no-device" no-device "$(kmt_json $STATE result)"
kmt_run "status exits 0" $A status --json
kmt_match "status --json: no-device" '"state": "no-device"' "$KMT_OUT"
kmt_match "and healthy" '"health": "ok"' "$KMT_OUT"
