#!/usr/bin/env bash
# Tools and cached inputs for the VM end-to-end tests (tests/vm/, docs/testing-vm.md).
#
# Installs busybox-static, mmdebstrap and ignition (tier 2), the kernel
# headers of the guest's release (to build the out-of-tree test modules),
# socat (the guest's only way out: a guestfwd to the registry on 127.0.0.1),
# and the image tools (QEMU itself: 38-qemu.sh); downloads
# Debian's kernel image package for the guest — never installed on the host —
# and then lets the harness derive everything it caches (vmlinux for PVH boot,
# module subset, test modules, base initramfs) so `make test` pays for it here.
#
# The guest release is the one `linux-image-amd64` depends on today; it is
# discovered, never written down, and the cache is keyed by it.
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Same default as tests/vm/run: outside the checkout, so a fresh clone (CI)
# finds it.
if [[ -n ${KMM_DAY1_VM_CACHE:-} ]]; then
    cache=$KMM_DAY1_VM_CACHE
elif mkdir -p /var/cache/kmm-day1-tests/vm 2>/dev/null && [[ -w /var/cache/kmm-day1-tests/vm ]]; then
    cache=/var/cache/kmm-day1-tests/vm
else
    cache=$here/../vm/.cache
fi

pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z "$pkg" ]]; then
    echo "40-vm: cannot find the kernel image package linux-image-amd64 depends on (run apt-get update)" >&2
    exit 1
fi
release=${pkg#linux-image-}

checks() {
    need busybox-static test -x /bin/busybox
    need socat socat -V
    need xz-utils xz --version
    need cpio cpio --version
    need kmod depmod --version
    need e2fsprogs mkfs.ext4 -V
    need make make --version
    need "gcc libc6-dev" c_runs cc
    need secilc test -x /usr/bin/secilc
    need umoci umoci --version
    need skopeo skopeo --version
    need docker-registry docker-registry --version
    need mmdebstrap mmdebstrap --version
    need ignition /usr/lib/dracut/modules.d/30ignition/ignition -version
    need coreutils sha256sum --version
    need "linux-headers-$release" test -f "/usr/src/linux-headers-$release/Makefile"
}
ensure checks

# The kernel image package, kept as the .deb: the harness unpacks only what it
# needs from it (the kernel and a handful of modules), keyed by the release.
kdir="$cache/kernel/$release"
if [[ ! -s "$kdir/image.deb" ]]; then
    echo "40-vm: downloading $pkg"
    mkdir -p "$kdir"
    tmp=$(mktemp -d "$kdir/.tmp.XXXXXX")
    chmod 755 "$tmp" # apt-get download runs as _apt and must write here
    SETUP_CLEANUP+=("$tmp")
    (cd "$tmp" && apt-get download "$pkg" >/dev/null)
    debs=("$tmp"/*.deb)
    mv "${debs[0]}" "$kdir/image.deb.tmp"
    mv "$kdir/image.deb.tmp" "$kdir/image.deb"
fi
echo "$release" >"$cache/release.tmp"
mv "$cache/release.tmp" "$cache/release"

# Derive and cache everything the boots need (no VM is started).
"$here/../vm/run" --prepare
