# shellcheck shell=bash disable=SC2034,SC2054 # globals for tests/vm/run; commas are QEMU syntax
# Starting guests. Sourced by tests/vm/run.
#
# Every QEMU runs under `timeout`. KVM is used only when a short probe boot
# succeeds (nested KVM on the build machines aborts or hangs); otherwise TCG.
# The kernel is the uncompressed vmlinux, booted through PVH: about twice as
# fast as the bzImage under TCG.

QEMU=${KMM_DAY1_VM_QEMU:-qemu-system-x86_64}

# qemu_base_args ACCEL INITRD SERIAL_LOG: the options every guest gets, with
# the kernel in $VMLINUX (lib/build.sh use_kernel). The console is appended
# to SERIAL_LOG, not truncated: a scenario that boots several kernels runs one
# QEMU after another and keeps one log (commas in a path are doubled: QEMU's
# option syntax).
qemu_base_args() {
    local accel=$1 initrd=$2 serial=$3
    QARGS=(-M pc -m "${KMM_DAY1_VM_MEM:-512}" -smp 1 -nodefaults -no-user-config
        -display none -monitor none
        -chardev "file,id=serial0,path=${serial//,/,,},append=on" -serial chardev:serial0
        -kernel "$VMLINUX" -initrd "$initrd"
        -device isa-debug-exit,iobase=0xf4,iosize=0x04)
    if [[ $accel == kvm ]]; then
        QARGS+=(-accel kvm -cpu host)
    else
        QARGS+=(-accel tcg -cpu max)
    fi
}

# Sets ACCEL to kvm or tcg. KMM_DAY1_VM_ACCEL forces one.
probe_accel() {
    if [[ -n "${KMM_DAY1_VM_ACCEL:-}" ]]; then
        ACCEL=$KMM_DAY1_VM_ACCEL
        return
    fi
    ACCEL=tcg
    [[ -r /dev/kvm && -w /dev/kvm ]] || { log "no usable /dev/kvm: TCG"; return; }
    local dir=$OUT/.probe
    rm -rf "$dir" && mkdir -p "$dir/root"
    printf '#!/bin/busybox sh\n. /opt/kmmtest/lib.sh\nkmt_boot\nkmt_exit 0\n' >"$dir/root/init"
    chmod +x "$dir/root/init"
    { make_cpio "$dir/root"; cat "$BASE_INITRD"; } >"$dir/initrd"
    qemu_base_args kvm "$dir/initrd" "$dir/serial.log"
    local rc=0
    timeout -k 2 "${KMM_DAY1_VM_KVM_PROBE_TIMEOUT:-8}" "$QEMU" "${QARGS[@]}" -no-reboot \
        -append "console=ttyS0 panic=-1 quiet" >"$dir/qemu.log" 2>&1 || rc=$?
    if ((rc == 1)); then
        ACCEL=kvm
        log "KVM probe boot succeeded: using KVM"
    else
        log "KVM probe boot failed (exit $rc, see $dir): using TCG"
    fi
}
