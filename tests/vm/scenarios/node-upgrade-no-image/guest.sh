# description: kernel upgrade to a kernel with no image in the registry: the staged pull and the pull after boot fail with the image named in status; no reboot, no loop
# shellcheck source=/dev/null # node-upgrade-staged/upgrade.sh, copied by lib/ostree.sh
. /opt/kmmtest/upgrade.sh
