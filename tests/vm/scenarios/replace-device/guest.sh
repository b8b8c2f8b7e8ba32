# description: agent replace on a node with the module's device (QEMU's virtio-net, pci:v00001AF4d00001000): the swap happens
A=/usr/local/bin/kmm-day1-agent
STATE=/var/lib/kmm-day1/kmmtest/replace.json
kmt_check "in-tree dummy loaded at boot" modprobe dummy
kmt_check "the guest has the virtio-net PCI device" grep -q '^pci:v00001AF4d00001000' /sys/bus/pci/devices/*/modalias

kmt_run "replace succeeds" $A replace
kmt_match "and swaps" 'kmmtest: removed \[dummy\], loaded \[dummy, kmmtest_virtio\]' "$KMT_OUT"
kmt_eq "dummy is the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
kmt_check "kmmtest_virtio is loaded" kmt_loaded kmmtest_virtio
kmt_eq "replace.json says loaded" loaded "$(kmt_json $STATE result)"
