# description: agent replace under SELinux enforcing (test policy): a plain finit_module of a store file is denied with an AVC; the agent swaps dummy with dependency, parameters and firmware, shows the labels, names SELinux when refused, and rolls back
#
# The kernel booted with security=selinux selinux=1 enforcing=1 and no
# policy; /init loads policy.cil's binary and runs the agent in the domain a
# node's unit has (unconfined_service_t), by writing it to
# /proc/self/attr/exec before exec. The store is a tmpfs mounted with
# context=…var_lib_t, the label the store has on a node.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
R=$KMT_RELEASE
STATE=$S/kmmtest/replace.json
AGENT_CTX=system_u:system_r:unconfined_service_t
NOLOAD_CTX=system_u:system_r:kmm_noload_t
STORE_CTX=system_u:object_r:var_lib_t

# in_domain CTX CMD…: CMD in domain CTX (a subshell sets its exec context).
in_domain() {
    local ctx=$1
    shift
    (printf %s "$ctx" >/proc/self/attr/exec && exec "$@")
}
ctx_of_self() { tr -d '\0' </proc/self/attr/current; }
avc_denials() { dmesg | grep -c 'avc: *denied'; }

kmt_check "in-tree dummy loaded at boot" modprobe dummy

mount -t selinuxfs selinuxfs /sys/fs/selinux
kmt_eq "SELinux enforces from the kernel command line" 1 "$(kmt_read /sys/fs/selinux/enforce)"
kmt_check "the test policy loads through /sys/fs/selinux/load" \
    sh -c 'cat /opt/kmmtest/selinux/policy.bin >/sys/fs/selinux/load'
kmt_eq "SELinux still enforces with the policy" 1 "$(kmt_read /sys/fs/selinux/enforce)"
kmt_eq "/init runs as kernel_t" system_u:system_r:kernel_t "$(ctx_of_self)"
kmt_eq "a process started through /proc/self/attr/exec runs in the agent's domain" \
    "$AGENT_CTX" "$(in_domain "$AGENT_CTX" sh -c "tr -d '\\0' </proc/self/attr/current")"

mkdir -p $S /var/lib/kmm-day1-fail
mount -t tmpfs -o "context=$STORE_CTX" tmpfs $S
mount -t tmpfs -o "context=$STORE_CTX" tmpfs /var/lib/kmm-day1-fail
cp -a /opt/kmmtest/store/. $S/
cp -a /opt/kmmtest/store-fail/. /var/lib/kmm-day1-fail/
TREE=$(echo $S/kmmtest/"$R"/sha256-*)
KO=$TREE/lib/modules/$R/extra/kmmtest_params.ko

# (a) The policy bites: finit_module of a store file from the agent's domain.
kmt_capture in_domain "$AGENT_CTX" /opt/kmmtest/finit "$KO"
kmt_match "the store's module file is labelled var_lib_t" "label $STORE_CTX\$" "$KMT_OUT"
kmt_eq "finit_module of it from the agent's domain fails" 1 "$KMT_RC"
kmt_match "with EACCES" 'Permission denied \(errno 13\)' "$KMT_OUT"
kmt_match "the kernel logged the AVC: module_load, agent domain, var_lib_t file" \
    "avc: +denied +\\{ module_load \\} .*path=\"$KO\".* scontext=$AGENT_CTX tcontext=$STORE_CTX tclass=system permissive=0" "$(dmesg)"
dmesg | grep 'avc: *denied' | sed 's/^/    avc| /'
kmt_refuse "kmmtest_params was not loaded" kmt_loaded kmmtest_params
# The control: the same call on the node's own tree (modules_object_t) works.
HOSTKO=$(find /lib/modules/"$R" -name crc16.ko | head -n 1)
kmt_refuse "crc16 is not loaded yet" kmt_loaded crc16
kmt_capture in_domain "$AGENT_CTX" /opt/kmmtest/finit "$HOSTKO"
kmt_match "the node's module file is labelled modules_object_t" 'label system_u:object_r:modules_object_t$' "$KMT_OUT"
kmt_eq "finit_module of it from the agent's domain succeeds" 0 "$KMT_RC"
kmt_check "crc16 is loaded" kmt_loaded crc16
rmmod crc16

# The agent's message when SELinux refuses a load: a domain that may not
# load from memory.
DENIALS=$(avc_denials)
kmt_run_fails "replace in a domain without module_load on itself fails" \
    in_domain "$NOLOAD_CTX" $A replace --config-dir /etc/kmm-day1-noload
kmt_match "the agent says SELinux refused it and names file and label" \
    "loading \`kmmtest_params\` from $KO: SELinux is enforcing and refused it \\(EACCES, most likely \`system module_load\` for $NOLOAD_CTX on a file labelled $STORE_CTX\\)" "$KMT_OUT"
kmt_match "and where the AVC is" 'journalctl -t audit -g avc. or .ausearch -m avc -c kmm-day1-agent' "$KMT_OUT"
kmt_eq "the kernel logged one more AVC" $((DENIALS + 1)) "$(avc_denials)"
kmt_match "for module_load of the domain on itself" \
    "avc: +denied +\\{ module_load \\} .*comm=\"kmm-day1-agent\" scontext=$NOLOAD_CTX tcontext=$NOLOAD_CTX tclass=system" "$(dmesg)"
kmt_refuse "kmmtest_params was not loaded" kmt_loaded kmmtest_params

# (b) The agent swaps in-tree for out-of-tree under enforcing.
DENIALS=$(avc_denials)
kmt_run "replace in the agent's domain succeeds" in_domain "$AGENT_CTX" $A replace
kmt_match "the agent reports the swap" 'kmmtest: removed \[dummy\], loaded \[' "$KMT_OUT"
kmt_eq "replace caused no AVC denial" "$DENIALS" "$(avc_denials)"
kmt_full_swap_loaded
kmt_eq "kmmtest_fw loaded the firmware from the var_lib_t store" "$(cat /opt/kmmtest/expect/fw_line)" \
    "$(kmt_read /sys/module/kmmtest_fw/parameters/fw_text)"
kmt_eq "replace.json says loaded" loaded "$(kmt_json $STATE result)"
kmt_eq "replace.json names the tree's digest" "$(cat /opt/kmmtest/expect/digest)" "$(kmt_json $STATE digest)"

kmt_run "status in the agent's domain exits 0" in_domain "$AGENT_CTX" $A status
kmt_match "status shows SELinux, the domain and the store's label" \
    "selinux: enforcing; this process runs as $AGENT_CTX; store $S labelled $STORE_CTX" "$KMT_OUT"
kmt_match "status shows the tree's label" "tree: +$TREE \\(pulled [^,]*, SELinux label $STORE_CTX\\)" "$KMT_OUT"
kmt_run "status --json exits 0" in_domain "$AGENT_CTX" $A status --json
kmt_match "status --json has the store's label" "\"store_label\": \"$STORE_CTX\"" "$KMT_OUT"

# (c) Rollback under enforcing: back to the in-tree dummy, then a tree whose
# second module fails its init.
rmmod kmmtest_fw kmmtest_params kmmtest_user kmmtest_dep dummy
kmt_check "the in-tree dummy loads again for the rollback case" modprobe dummy
DENIALS=$(avc_denials)
kmt_run_fails "replace with a failing module fails" \
    in_domain "$AGENT_CTX" $A replace --config-dir /etc/kmm-day1-fail --store /var/lib/kmm-day1-fail
kmt_match "and names the module that failed" 'kmmtest_fail' "$KMT_OUT"
kmt_match "and says the in-tree dummy was reloaded" 'rolled back: in-tree dummy reloaded' "$KMT_OUT"
kmt_match "the out-of-tree dummy had been loaded before the failure" 'dummy: out-of-tree kmm-day1-test build' "$(dmesg)"
kmt_check "dummy is loaded again" kmt_loaded dummy
kmt_eq "and it is the in-tree one" "<missing>" "$(kmt_read /sys/module/dummy/version)"
kmt_refuse "kmmtest_fail is not loaded" kmt_loaded kmmtest_fail
kmt_eq "replace.json says rolled back" rolled-back "$(kmt_json /var/lib/kmm-day1-fail/kmmtest/replace.json result)"
kmt_eq "the rollback caused no AVC denial" "$DENIALS" "$(avc_denials)"
