# description: kernel upgrade of a joined node: the staged pull fetches the new kernel's image in the MCO's reboot, the first boot of the new kernel swaps the module; no second reboot, and the pull on the joined node never reboots it
# shellcheck source=/dev/null # node-upgrade-staged/upgrade.sh, copied by lib/ostree.sh
. /opt/kmmtest/upgrade.sh
