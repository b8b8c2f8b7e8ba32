# shellcheck shell=bash
# A kernel upgrade of a node that has joined the cluster, variant registry-down
# (lib/ostree.sh upgrade_prepare; the checks: node-upgrade-staged/upgrade.sh).
# shellcheck source=/dev/null # lib/ostree.sh, checked on its own
. "$VM_DIR/lib/ostree.sh"
upgrade_scenario registry-down
