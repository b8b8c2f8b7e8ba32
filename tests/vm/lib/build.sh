# shellcheck shell=bash
# Builds and caches the inputs of a guest boot. Sourced by tests/vm/run.
#
# Cache layout (/var/cache/kmm-day1-tests/vm or tests/vm/.cache; every entry is keyed by what it is
# made from, written under a temporary name and renamed when complete):
#   release                                 guest kernel release (written by tests/setup.d/40-vm.sh)
#   release-previous                        the release before it in the same ABI series (40-vm.sh)
#   kernel/<release>/image.deb              Debian's linux-image-<release>, never installed
#   kernel/<release>/vmlinux                uncompressed kernel for PVH boot
#   kernel/<release>/mods-<hash>/           in-tree module subset (lib/guest-modules.list) + depmod
#   testmods/<release>-<hash>/              out-of-tree test modules (modules/)
#   initramfs/base-<hash>.cpio.gz           busybox, module subset, test modules, guest lib
#   rootfs/<suite>-<hash>.img               tier 2: systemd rootfs (lib/tier2.sh)
# Results go to tests/vm/.cache/out/<scenario>/ (serial.log, initrd, disks, result).

# CUR_RELEASE: the kernel every scenario boots unless it asks for others;
# PREV_RELEASE: the one before it, a real Debian build with its own headers,
# for scenarios that model a node moving from one kernel to the next.
vm_release() {
    if [[ -n "${KMM_DAY1_VM_KERNEL_RELEASE:-}" ]]; then
        CUR_RELEASE=$KMM_DAY1_VM_KERNEL_RELEASE
    elif [[ -s "$CACHE/release" ]]; then
        CUR_RELEASE=$(<"$CACHE/release")
    else
        die "no guest kernel in $CACHE: run tests/setup.d/40-vm.sh first"
    fi
    if [[ -n "${KMM_DAY1_VM_PREV_KERNEL_RELEASE:-}" ]]; then
        PREV_RELEASE=$KMM_DAY1_VM_PREV_KERNEL_RELEASE
    elif [[ -s "$CACHE/release-previous" ]]; then
        PREV_RELEASE=$(<"$CACHE/release-previous")
    else
        die "no previous guest kernel in $CACHE (release-previous): run tests/setup.d/40-vm.sh"
    fi
    RELEASE=$CUR_RELEASE
    KDIR=$CACHE/kernel/$RELEASE
}

# use_kernel REL: RELEASE, KDIR, VMLINUX, MODS, TESTMODS and BASE_INITRD for
# REL, built now when not cached. lib/images.sh reads RELEASE and TESTMODS,
# so a scenario lays out another kernel's trees between two calls of this
# (use_kernel "$PREV_RELEASE"; kmm_tree …; use_kernel "$CUR_RELEASE").
use_kernel() {
    RELEASE=$1
    KDIR=$CACHE/kernel/$RELEASE
    [[ -s $KDIR/image.deb ]] || die "$KDIR/image.deb is missing: run tests/setup.d/40-vm.sh"
    build_vmlinux
    # shellcheck disable=SC2119 # the default list; bench/vm.sh passes its own
    build_module_subset
    build_test_modules
    build_base_initramfs
}

# A short content hash of files and strings, for cache keys.
hash_of() {
    local item
    for item in "$@"; do
        if [[ -d $item ]]; then
            (cd "$item" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        elif [[ -f $item ]]; then
            sha256sum <"$item"
        else
            printf '%s\n' "$item"
        fi
    done | sha256sum | cut -c1-16
}

# Atomically publish $1 (a finished temp path) as $2.
publish() {
    rm -rf "$2"
    mv "$1" "$2"
}

# vmlinux: the bzImage's payload is xz (Debian builds with CONFIG_KERNEL_XZ);
# decompress from the xz magic. xz stops with an error at the bzImage's
# trailing bytes, so success is judged by the ELF header instead.
build_vmlinux() {
    VMLINUX=$KDIR/vmlinux
    [[ -s $VMLINUX ]] && return
    log "extracting the kernel from $(basename "$KDIR")/image.deb"
    local tmp
    tmp=$(mktemp -d "$KDIR/.tmp.XXXXXX")
    dpkg-deb --fsys-tarfile "$KDIR/image.deb" | tar -x -C "$tmp" "./boot/vmlinuz-$RELEASE" "./boot/config-$RELEASE"
    local bz=$tmp/boot/vmlinuz-$RELEASE off
    # (grep stops writing once head has its line: a SIGPIPE, not an error)
    off=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$bz" | head -1 | cut -d: -f1 || true)
    [[ -n $off ]] || die "no xz payload in vmlinuz-$RELEASE"
    tail -c +$((off + 1)) "$bz" | xz -dc >"$tmp/vmlinux" 2>/dev/null || true
    [[ "$(head -c 4 "$tmp/vmlinux" | od -An -c | tr -d ' ')" == '177ELF' ]] \
        || die "could not extract vmlinux from vmlinuz-$RELEASE"
    cp "$tmp/boot/config-$RELEASE" "$KDIR/config"
    mv "$tmp/vmlinux" "$VMLINUX.tmp"
    mv "$VMLINUX.tmp" "$VMLINUX"
    rm -rf "$tmp"
}

# The in-tree modules the guest needs, with their dependencies, as a module
# tree of its own with depmod's indexes (the agent reads modules.dep and
# modules.builtin from /lib/modules/<release> to put in-tree modules back).
# $1: another list of module names (bench/vm.sh adds what podman needs).
# shellcheck disable=SC2120 # called with a list by bench/vm.sh only
build_module_subset() {
    local list=${1:-$VM_DIR/lib/guest-modules.list}
    MODS=$KDIR/mods-$(hash_of "$list" "$RELEASE")
    [[ -d $MODS ]] && return
    log "building the in-tree module subset for $RELEASE"
    local tmp
    tmp=$(mktemp -d "$KDIR/.tmp.XXXXXX")
    dpkg-deb --fsys-tarfile "$KDIR/image.deb" | tar -x -C "$tmp/" "./lib/modules/$RELEASE"
    depmod -b "$tmp" "$RELEASE"
    local out=$tmp/out/lib/modules/$RELEASE m path
    mkdir -p "$out"
    cp "$tmp/lib/modules/$RELEASE"/modules.{builtin,builtin.modinfo,order} "$out/"
    local -a names
    mapfile -t names < <(grep -v -e '^#' -e '^$' "$list")
    for m in "${names[@]}"; do
        modprobe -d "$tmp" -S "$RELEASE" --show-depends "$m" \
            | awk '$1 == "insmod" {print $2}'
    done | sort -u | while read -r path; do
        rel=${path#"$tmp"/lib/modules/"$RELEASE"/}
        mkdir -p "$out/$(dirname "$rel")"
        cp "$path" "$out/$rel"
    done
    depmod -b "$tmp/out" "$RELEASE"
    publish "$tmp/out" "$MODS"
    rm -rf "$tmp"
}

# Out-of-tree test modules, built against the guest's headers (installed on
# the host by 40-vm.sh; /lib/modules/<release>/build exists only with the
# image package installed, so the headers directory is used directly).
build_test_modules() {
    local headers=/usr/src/linux-headers-$RELEASE
    [[ -d $headers ]] || die "$headers is missing: run tests/setup.d/40-vm.sh"
    TESTMODS=$CACHE/testmods/$RELEASE-$(hash_of "$VM_DIR/modules" "$headers/.config")
    [[ -d $TESTMODS ]] && return
    log "building the test modules against $headers"
    mkdir -p "$CACHE/testmods"
    local tmp
    tmp=$(mktemp -d "$CACHE/testmods/.tmp.XXXXXX")
    cp "$VM_DIR"/modules/* "$tmp/"
    make -s -C "$headers" M="$tmp" KBUILD_MODPOST_WARN= W=1 modules >"$tmp/build.log" 2>&1 \
        || { cat "$tmp/build.log" >&2; die "building the test modules failed"; }
    # Everything but the BTF notice (no vmlinux with BTF next to the headers)
    # is a warning in our own sources: fail on it.
    if grep -v -e 'Skipping BTF generation' "$tmp/build.log" | grep -q .; then
        cat "$tmp/build.log" >&2
        die "the test modules build with warnings"
    fi
    mkdir "$tmp/out"
    cp "$tmp"/*.ko "$tmp/out/"
    publish "$tmp/out" "$TESTMODS"
    rm -rf "$tmp"
}

# cpio (newc) of a directory, owned by root, gzip'd when $2 is "gz".
make_cpio() {
    (cd "$1" && find . -print0 | LC_ALL=C sort -z \
        | cpio --null -o -H newc --owner=0:0 --quiet) | if [[ ${2:-} == gz ]]; then gzip -1; else cat; fi
}

# The part of the initramfs every scenario shares. A scenario's own files go in
# a gzip'd cpio placed *before* it (the kernel unpacks concatenated archives,
# but does not find the start of an uncompressed one that follows a gzip
# member). Nothing in a scenario's archive has a path in the base one, so
# order does not decide any file's contents.
build_base_initramfs() {
    local busybox=/bin/busybox
    if [[ ! -x $busybox ]] || ! file_is_static "$busybox"; then
        die "$busybox is not the static busybox: install busybox-static"
    fi
    BASE_INITRD=$CACHE/initramfs/base-$(hash_of "$busybox" "$MODS" "$TESTMODS" "$VM_DIR/guest").cpio.gz
    [[ -s $BASE_INITRD ]] && return
    log "building the base initramfs"
    mkdir -p "$CACHE/initramfs"
    local tmp
    tmp=$(mktemp -d "$CACHE/initramfs/.tmp.XXXXXX")
    local r=$tmp/root
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,mnt,etc,var/lib,lib/modules,opt/kmmtest/modules}
    cp "$busybox" "$r/bin/busybox"
    cp -a "$MODS/lib/modules/$RELEASE" "$r/lib/modules/"
    cp "$TESTMODS"/*.ko "$r/opt/kmmtest/modules/"
    cp "$VM_DIR"/guest/*.sh "$r/opt/kmmtest/"
    echo "$RELEASE" >"$r/opt/kmmtest/release"
    make_cpio "$r" gz >"$tmp/base.cpio.gz"
    mv "$tmp/base.cpio.gz" "$BASE_INITRD"
    rm -rf "$tmp"
}

file_is_static() {
    ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'INTERP'
}

# Both kernels; RELEASE and the rest are left set to the current one, which
# the tier-2 rootfs is built from.
prepare_all() {
    vm_release
    # Leftovers of an interrupted build.
    rm -rf "$CACHE"/kernel/*/.tmp.* "$CACHE"/testmods/.tmp.* "$CACHE"/initramfs/.tmp.*
    use_kernel "$PREV_RELEASE"
    use_kernel "$CUR_RELEASE"
    build_rootfs
}
