# description: the test modules and the guest kernel behave as the agent expects (no agent)
#
# Everything the agent relies on, done by hand with busybox: an in-tree module
# loaded at boot blocks its out-of-tree namesake until removed; parameters,
# symbol dependencies, firmware_class.path and a failing init behave as the
# agent's replace logic assumes.
M=/opt/kmmtest/modules

# The in-tree dummy, as a node would have it loaded at boot.
kmt_check "in-tree dummy loads with modprobe" modprobe dummy
kmt_check "dummy is loaded" kmt_loaded dummy
kmt_eq "in-tree dummy has no version" "<missing>" "$(kmt_read /sys/module/dummy/version)"
kmt_refuse "out-of-tree dummy cannot load beside the in-tree one" insmod $M/dummy.ko
kmt_check "in-tree dummy unloads" rmmod dummy
kmt_check "out-of-tree dummy loads after that" insmod $M/dummy.ko
kmt_eq "/sys/module/dummy/version shows the out-of-tree build" kmm-day1-test "$(kmt_read /sys/module/dummy/version)"
kmt_match "out-of-tree dummy taints the kernel O (and E: unsigned)" '^OE$' "$(kmt_read /sys/module/dummy/taint)"
kmt_check "out-of-tree dummy created dummy0" test -e /sys/class/net/dummy0

# Parameters of each type, as finit_module passes them.
# An unknown parameter does not fail the load: the kernel only warns. (So a
# typo in a config's parameters is caught only by checking them against the
# module's own `parm` list before loading.)
kmt_check "a module loads even with an unknown parameter" insmod $M/kmmtest_params.ko nosuch=1
kmt_match "the kernel only warns about it" "kmmtest_params: unknown parameter 'nosuch' ignored" "$(dmesg | tail -n 5)"
kmt_check "kmmtest_params unloads" rmmod kmmtest_params
kmt_check "kmmtest_params loads with parameters" insmod $M/kmmtest_params.ko count=7 'label=hello' enabled=1
P=/sys/module/kmmtest_params/parameters
kmt_eq "int parameter" 7 "$(kmt_read $P/count)"
kmt_eq "string parameter" hello "$(kmt_read $P/label)"
kmt_eq "bool parameter" Y "$(kmt_read $P/enabled)"

# Symbol dependencies: order matters.
kmt_refuse "kmmtest_user refuses to load before kmmtest_dep" insmod $M/kmmtest_user.ko
kmt_match "the kernel names the missing symbol" 'kmmtest_user: Unknown symbol kmmtest_dep_value' "$(dmesg | tail -n 5)"
kmt_check "kmmtest_dep loads" insmod $M/kmmtest_dep.ko
kmt_check "kmmtest_user loads after kmmtest_dep" insmod $M/kmmtest_user.ko
kmt_eq "kmmtest_user called into kmmtest_dep" 42 "$(kmt_read /sys/module/kmmtest_user/parameters/dep_value)"
kmt_match "kmmtest_dep is held by kmmtest_user" '^kmmtest_dep [0-9]+ 1 kmmtest_user' "$(grep '^kmmtest_dep ' /proc/modules)"
kmt_refuse "kmmtest_dep cannot be removed while in use" rmmod kmmtest_dep
kmt_check "dependents first: kmmtest_user unloads" rmmod kmmtest_user
kmt_check "then kmmtest_dep unloads" rmmod kmmtest_dep

# Firmware through firmware_class.path, as the agent sets it.
FW=/opt/kmmtest/fw/kmmtest/kmmtest_fw.bin
kmt_refuse "kmmtest_fw fails while its firmware is not on the search path" insmod $M/kmmtest_fw.ko
kmt_match "because request_firmware found nothing (ENOENT)" 'kmmtest_fw: firmware kmmtest/kmmtest_fw.bin not found: -2' "$(dmesg | tail -n 5)"
kmt_check "firmware_class.path is writable" sh -c 'printf %s /opt/kmmtest/fw >/sys/module/firmware_class/parameters/path'
kmt_check "kmmtest_fw loads with firmware_class.path set" insmod $M/kmmtest_fw.ko
kmt_eq "the module got the whole firmware file" "$(wc -c <$FW)" "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_size)"
kmt_eq "the module got this run's firmware contents" "$(head -n 1 $FW)" "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"

# A module whose init fails leaves nothing loaded.
kmt_refuse "kmmtest_fail's init fails" insmod $M/kmmtest_fail.ko
kmt_refuse "kmmtest_fail is not loaded after that" kmt_loaded kmmtest_fail
kmt_match "its init ran and said why" 'kmmtest_fail: refusing to load \(ENODEV\)' "$(dmesg | tail -n 5)"

# Rollback by hand: the in-tree module comes back.
kmt_check "out-of-tree dummy unloads" rmmod dummy
kmt_check "in-tree dummy loads again" modprobe dummy
kmt_eq "and it is the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
