# description: agent replace refuses to remove an in-tree module that is in use, and leaves the node as it was
#
# ext4 holds the mounted disk: removing it must be refused with a message
# naming it, not forced, and the in-tree dummy must end up loaded either way.
A=/usr/local/bin/kmm-day1-agent
kmt_check "in-tree dummy loaded at boot" modprobe dummy
kmt_check "a disk is mounted, so ext4 is in use" kmt_disk /mnt
kmt_run_fails "replace fails" $A replace
kmt_match "and names the module in use" 'ext4.* in use' "$KMT_OUT"
kmt_check "ext4 is still loaded" kmt_loaded ext4
kmt_check "the disk is still mounted" grep -q ' /mnt ext4 ' /proc/mounts
kmt_check "dummy is loaded" kmt_loaded dummy
kmt_eq "and it is the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
kmt_match "replace.json records the failure" '^(failed|rolled-back)$' "$(kmt_json /var/lib/kmm-day1/kmmtest/replace.json result)"
