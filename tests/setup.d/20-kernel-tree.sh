#!/usr/bin/env bash
# Debian's real kernel module tree, for the differential test of the agent's
# dependency resolver against `modprobe --show-depends`
# (agent/tests/replace_differential.rs) and the dry-run tests.
#
# The kernel package is downloaded and unpacked, never installed: the host
# keeps its own kernel and /lib/modules untouched.
#
# Result (stable paths the tests read):
#   /var/cache/kmm-day1-tests/kernel/release            the kernel release, e.g. 6.1.0-56-amd64
#   /var/cache/kmm-day1-tests/kernel/root/lib/modules/<release>/   the tree, with modules.dep
# Override the cache directory with KMM_DAY1_KERNEL_CACHE (tests read the same variable).
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"

cache="${KMM_DAY1_KERNEL_CACHE:-/var/cache/kmm-day1-tests/kernel}"

checks() {
    need kmod modprobe --version
    need kmod depmod --version
    need xz-utils xz --version
    need zstd zstd --version
}
ensure checks

# The image package that linux-image-amd64 currently depends on, e.g.
# linux-image-6.1.0-56-amd64 (the ABI number changes with Debian updates).
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z "$pkg" ]]; then
    echo "20-kernel-tree: cannot find the kernel image package linux-image-amd64 depends on" >&2
    exit 1
fi
release=${pkg#linux-image-}

if [[ -f "$cache/release" && "$(cat "$cache/release")" == "$release" \
      && -s "$cache/root/lib/modules/$release/modules.dep" ]]; then
    exit 0
fi

echo "20-kernel-tree: unpacking $pkg into $cache"
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
chmod 755 "$tmp" # apt-get download runs as _apt and must write here
SETUP_CLEANUP+=("$tmp")
(cd "$tmp" && apt-get download "$pkg" >/dev/null)
dpkg-deb -x "$tmp"/*.deb "$tmp/root"
# Only the module tree is needed; the kernel image itself is left for the VM
# tests to fetch the same way if they need it.
if [[ ! -d "$tmp/root/lib/modules/$release" ]]; then
    echo "20-kernel-tree: $pkg has no lib/modules/$release" >&2
    exit 1
fi
depmod -b "$tmp/root" "$release"

# Publish: replace the old tree, then write `release` last so a reader never
# sees a release without its tree.
rm -rf "$cache/root" "$cache/release"
mv "$tmp/root" "$cache/root"
echo "$release" >"$cache/release.tmp"
mv "$cache/release.tmp" "$cache/release"
echo "20-kernel-tree: $(find "$cache/root/lib/modules/$release" -name '*.ko*' | wc -l) modules for $release"
