# shellcheck shell=bash
# Driver trees and images in KMM's layout, from the test modules. Sourced by
# tests/vm/run.
#
# KMM layout (what a driver container image holds):
#   /opt/lib/modules/<release>/extra/<module>.ko
#   /opt/lib/modules/<release>/modules.dep …      from `depmod -b /opt <release>`
#   /firmware/kmmtest/kmmtest_fw.bin              the firmware directory

# kmm_tree DIR MODULE…: the KMM layout under DIR with the named test modules
# (file names without .ko) and a firmware file whose first line is unique to
# this call (printed on stdout, so a guest can compare what it loaded).
kmm_tree() {
    local dir=$1 m
    shift
    local mdir=$dir/opt/lib/modules/$RELEASE
    mkdir -p "$mdir/extra" "$dir/firmware/kmmtest"
    for m in "$@"; do
        cp "$TESTMODS/$m.ko" "$mdir/extra/"
    done
    # As KMM's Dockerfiles do; an image has no modules.order or
    # modules.builtin, which depmod mentions on stderr (kept in the log).
    depmod -b "$dir/opt" "$RELEASE" 2>>"$dir.depmod.log"
    local line
    line="kmm-day1 test firmware $(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    printf '%s\npadding\n' "$line" >"$dir/firmware/kmmtest/kmmtest_fw.bin"
    printf '%s\n' "$line"
}

# store_tree TREE_SRC STORE NAME: publishes the KMM layout TREE_SRC into an
# agent store (agent/src/store.rs) as pull would: the module tree and the
# firmware under sha256-<hex>/, meta.json last, then the `current` link.
# The digest is the tree's content hash (no image involved). Prints it.
store_tree() {
    local src=$1 store=$2 name=$3
    local hex
    hex=$( (cd "$src" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)
    local kdir=$store/$name/$RELEASE tree
    tree=$kdir/sha256-$hex
    mkdir -p "$tree/lib"
    cp -a "$src/opt/lib/modules" "$tree/lib/"
    [[ -d $src/firmware ]] && cp -a "$src/firmware" "$tree/firmware"
    local files
    files=$(find "$tree" -type f | wc -l)
    cat >"$tree/meta.json" <<JSON
{"digest":"sha256:$hex","image":"kmmtest/$name:$RELEASE","source":"tests/vm (laid out by the harness)","kernel":"$RELEASE","layers":[],"files":$files,"firmware":$([[ -d $src/firmware ]] && echo true || echo false),"pulled":"$(date -u +%Y-%m-%dT%H:%M:%SZ)"}
JSON
    ln -sfn "sha256-$hex" "$kdir/current"
    printf 'sha256:%s\n' "$hex"
}

# oci_image TREE_SRC LAYOUT TAG: an OCI image (one layer, the KMM layout)
# built with umoci.
oci_image() {
    local src=$1 layout=$2 tag=$3
    local bundle
    bundle=$(mktemp -d "${TMPDIR:-/tmp}/kmmtest-bundle.XXXXXX")
    rmdir "$bundle"
    [[ -d $layout ]] || umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    umoci unpack --rootless --image "$layout:$tag" "$bundle" >/dev/null
    cp -a "$src"/. "$bundle/rootfs/"
    umoci repack --image "$layout:$tag" "$bundle"
    rm -rf "$bundle"
}

# push_image LAYOUT TAG REPO [registry_push options]: to the running test
# registry as REPO:TAG, Docker schema 2; prints the manifest digest.
push_image() {
    local layout=$1 tag=$2 repo=$3
    shift 3
    registry_push "oci:$layout:$tag" "$repo:$tag" --v2s2 "$@"
}

# serve_image OUT MODULE...: the scenario's registry (the guest reaches it
# as 10.0.2.100:5000, SCN_NET_PORT) serving kmmtest/dummy:RELEASE, a KMM
# image of the kmmtest MODULEs for the running kernel. The manifest digest
# goes to OUT/digest, kmm_tree's firmware line to stdout.
serve_image() {
    local out=$1
    shift
    registry_start "$out/registry" >&2
    SCN_NET_PORT=$REGISTRY_PORT
    kmm_tree "$out/image-src" "$@"
    oci_image "$out/image-src" "$out/oci" "$RELEASE" >&2
    push_image "$out/oci" "$RELEASE" kmmtest/dummy >"$out/digest"
}
