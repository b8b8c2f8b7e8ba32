# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A kernel upgrade of a node that has joined the cluster (lib/ostree.sh,
# upgrade_prepare; the checks: node-upgrade-staged/upgrade.sh): variant no-image.
# shellcheck source=/dev/null # lib/ostree.sh, checked on its own
. "$VM_DIR/lib/ostree.sh"
SCN_TIER=2
SCN_AGENT=1
SCN_KERNELS=("$PREV_RELEASE" "$CUR_RELEASE")
SCN_BOOTS=2
SCN_TIMEOUT=600

scenario_prepare() {
    upgrade_prepare "$1" "$3" no-image
}

scenario_cleanup() {
    upgrade_cleanup
}
