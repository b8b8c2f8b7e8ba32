# description: agent replace loads a dependency the image lacks (crc16) from the node's own module tree
#
# The image's modules.dep cannot name crc16 (depmod -b /opt does not see the
# kernel's modules); the module's own .modinfo does (depends=crc16), and the
# node's /lib/modules has it.
A=/usr/local/bin/kmm-day1-agent
kmt_refuse "crc16 is not loaded at boot" kmt_loaded crc16
kmt_run "replace succeeds" $A replace
kmt_check "crc16 was loaded first, from the node's tree" kmt_loaded crc16
kmt_eq "and it is the in-tree crc16 (no version, no taint)" "<missing>|" \
    "$(kmt_read /sys/module/crc16/version)|$(cat /sys/module/crc16/taint 2>/dev/null)"
kmt_eq "kmmtest_hostdep called into it" "$(cat /opt/kmmtest/expect/crc)" \
    "$(kmt_read /sys/module/kmmtest_hostdep/parameters/crc)"
kmt_eq "replace.json says loaded" loaded "$(kmt_json /var/lib/kmm-day1/kmmtest/replace.json result)"
