#!/usr/bin/env bash
# Tools and cached inputs for the VM end-to-end tests (tests/vm/, docs/testing-vm.md).
#
# Installs busybox-static, mmdebstrap and ignition (tier 2), the kernel
# headers of the guest's two releases (to build the out-of-tree test modules),
# socat (the guest's only way out: a guestfwd to the registry on 127.0.0.1),
# and the image tools (QEMU itself: 38-qemu.sh); downloads
# Debian's kernel image packages for the guest — never installed on the host —
# and then lets the harness derive everything it caches (vmlinux for PVH boot,
# module subset, test modules, base initramfs) so `make test` pays for it here.
#
# The guest release is the one `linux-image-amd64` depends on today; it is
# discovered, never written down, and the cache is keyed by it. A second,
# previous release of the same ABI series (the newest older ABI apt still has
# a candidate for; bookworm-security serves several) is fetched the same way,
# with its headers, for the scenarios that boot a node on one kernel and then
# another (SCN_KERNELS in tests/vm/lib/scenario.sh).
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

# The previous release: the same name one ABI number lower, then two…, until
# apt has a candidate. A few tries only: the local package lists, not a
# search of the archive. "6.1.0-57-amd64": series "6.1.0", ABI 57, "amd64".
series=${release%%-*}
abi=${release#"$series"-}
flavour=${abi#*-}
abi=${abi%%-*}
if [[ ! $abi =~ ^[0-9]+$ || $flavour == "$abi" ]]; then
    echo "40-vm: cannot read the ABI number of $release (expected <series>-<abi>-<flavour>)" >&2
    exit 1
fi
previous=''
for ((n = abi - 1; n >= 0 && n >= abi - 8; n--)); do
    candidate=$(apt-cache policy "linux-image-$series-$n-$flavour" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -n $candidate && $candidate != '(none)' ]]; then
        previous=$series-$n-$flavour
        break
    fi
done
if [[ -z $previous ]]; then
    echo "40-vm: apt has no linux-image-$series-<abi>-$flavour for an ABI below $abi (tried down to $((abi > 8 ? abi - 8 : 0))): the kernel-upgrade scenarios need the previous release; run apt-get update, or add bookworm-security" >&2
    exit 1
fi

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
    need "linux-headers-$previous" test -f "/usr/src/linux-headers-$previous/Makefile"
}
ensure checks

# The kernel image packages, kept as the .deb: the harness unpacks only what it
# needs from them (the kernel and a handful of modules), keyed by the release.
download_image() {
    local rel=$1 kdir="$cache/kernel/$1"
    [[ -s "$kdir/image.deb" ]] && return 0
    echo "40-vm: downloading linux-image-$rel"
    mkdir -p "$kdir"
    local tmp
    tmp=$(mktemp -d "$kdir/.tmp.XXXXXX")
    chmod 755 "$tmp" # apt-get download runs as _apt and must write here
    SETUP_CLEANUP+=("$tmp")
    (cd "$tmp" && apt-get download "linux-image-$rel" >/dev/null)
    local debs=("$tmp"/*.deb)
    mv "${debs[0]}" "$kdir/image.deb.tmp"
    mv "$kdir/image.deb.tmp" "$kdir/image.deb"
}
download_image "$release"
download_image "$previous"
echo "$release" >"$cache/release.tmp"
mv "$cache/release.tmp" "$cache/release"
echo "$previous" >"$cache/release-previous.tmp"
mv "$cache/release-previous.tmp" "$cache/release-previous"

# Derive and cache everything the boots need (no VM is started).
"$here/../vm/run" --prepare
