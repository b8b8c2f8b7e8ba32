# Stage 1 of a systemd guest (tier 2), run as /init from the initramfs on
# every boot after kmt_boot: mount the root disk, copy what Ignition wrote
# onto it on the first boot only, and hand over to systemd.
if ! { modprobe virtio_pci && modprobe virtio_blk && modprobe crc32c_generic && modprobe ext4; }; then
    kmt_fail "stage 1: loading the disk modules"
    kmt_finish
fi
# The in-tree driver is loaded before systemd starts, as a node's initramfs
# loads its NIC driver: replace has to remove it, and a rollback to put it back.
modprobe dummy || { kmt_fail "stage 1: loading the in-tree dummy"; kmt_finish; }
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
mkdir -p /newroot
mount -t ext4 /dev/vda /newroot || { kmt_fail "stage 1: mounting the root disk"; kmt_finish; }
if [ ! -e /newroot/var/lib/kmmtest/first-boot-done ]; then
    kmt_log "stage 1: first boot, applying the Ignition output"
    cp -a /opt/kmmtest/overlay/. /newroot/
    mkdir -p /newroot/var/lib/kmmtest
    touch /newroot/var/lib/kmmtest/first-boot-done
fi
umount /proc/sys/fs/binfmt_misc 2>/dev/null
umount /run /tmp
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /sbin/init
