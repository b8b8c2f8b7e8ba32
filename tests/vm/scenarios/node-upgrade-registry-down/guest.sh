# description: kernel upgrade with the registry down in the MCO's reboot: the staged pull gives up within pull.shutdown_timeout_secs, the new kernel boots on the in-tree driver, and the pull after boot publishes without rebooting the joined node
# shellcheck source=/dev/null # node-upgrade-staged/upgrade.sh, copied by lib/ostree.sh
. /opt/kmmtest/upgrade.sh
