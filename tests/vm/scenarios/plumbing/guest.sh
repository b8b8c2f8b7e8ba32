# description: the harness itself: registry through guestfwd only, state kept on disk across a reboot
#
# What the pull scenarios rest on: boot 1 fetches the driver image's manifest
# from the host registry (10.0.2.100:5000, the only address the guest can
# reach) and writes it to the virtio disk, then reboots inside the same QEMU
# process; boot 2 finds it there.
S=/var/lib/kmm-day1
kmt_check "the persistence disk mounts" kmt_disk $S
boots=$(($(cat $S/boots 2>/dev/null || echo 0) + 1))
echo $boots >$S/boots
sync
kmt_log "boot $boots of this disk"

if [ "$boots" = 1 ]; then
    kmt_check "the network comes up" kmt_net
    kmt_eq "the registry answers /v2/ through the guestfwd" '{}' "$(wget -q -O - http://10.0.2.100:5000/v2/)"
    kmt_check "a second connection works too (cmd: guestfwd, not a one-shot chardev)" \
        wget -q -O $S/manifest.json \
        --header 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://10.0.2.100:5000/v2/kmmtest/dummy/manifests/$(cat /opt/kmmtest/expect/tag)"
    kmt_eq "the manifest is the one the host pushed" "$(cat /opt/kmmtest/expect/manifest.sha256)" \
        "$(sha256sum $S/manifest.json | cut -d' ' -f1)"
    if [ "$KMT_FAILED" = 0 ]; then
        umount $S
        kmt_reboot
    fi
else
    kmt_eq "this is the second boot" 2 "$boots"
    kmt_eq "the manifest written before the reboot is intact" "$(cat /opt/kmmtest/expect/manifest.sha256)" \
        "$(sha256sum $S/manifest.json | cut -d' ' -f1)"
fi
