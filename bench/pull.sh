#!/usr/bin/env bash
# bench pull: `kmm-day1-agent pull --no-reboot` against `skopeo copy
# docker://… oci:…` of the same image from the same local Debian
# docker-registry (plain HTTP on 127.0.0.1), and against the floor of this
# machine: the larger of one core hashing the same blob bytes with SHA-256
# (openssl) and writing them to a file on the same filesystem with fsync.
#
# Images: KMM's layout, a real module tree (/opt/lib/modules/<kver>/ with
# Debian's .ko files and depmod's modules.dep) in the first layer, then four
# layers of random firmware (incompressible) adding up to 20 MiB, 200 MiB and
# 1 GiB. They are built once and kept in the registry storage under
# $BENCH_DIR/pull (delete it to rebuild).
#
# Per size: one untimed run of each side (the registry's blobs are then in
# the page cache for every timed run: all sides warm), then BENCH_REPS
# repetitions (default 5, 3 for 1 GiB) in rotating order agent/skopeo/floor,
# each run starting from an empty destination after `sync`.
# BENCH_QUICK=1 skips 1 GiB. Method and choices: docs/bench.md.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=tests/support/registry.sh
. tests/support/registry.sh

agent=${KMM_DAY1_AGENT_X86_64:-$PWD/target/x86_64-unknown-linux-musl/release/kmm-day1-agent}
[[ -x $agent ]] || { echo "bench pull: no static agent at $agent: run \`make agents\`" >&2; exit 1; }
cache=${KMM_DAY1_KERNEL_CACHE:-/var/cache/kmm-day1-tests/kernel}
kver=$(cat "$cache/release" 2>/dev/null) || { echo "bench pull: no Debian kernel tree in $cache: run tests/setup.d/20-kernel-tree.sh" >&2; exit 1; }
modules=$cache/root/lib/modules/$kver
for t in skopeo docker-registry depmod openssl gzip jq; do
    command -v "$t" >/dev/null || { echo "bench pull: $t is missing: run tests/setup.d/30-registry.sh and 20-kernel-tree.sh" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "bench pull: /usr/bin/time is missing: run tests/setup.d/35-pull-bench.sh" >&2; exit 1; }

sizes=(20 200 1024)
[[ ${BENCH_QUICK:-0} == 1 ]] && sizes=(20 200)

dir=$BENCH_DIR/pull
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work=$dir/run
rm -rf "$work"
mkdir -p "$work"

cleanup() {
    registry_stop 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# tar of DIR's entries NAMES (deterministic), gzip -1 like a build tool's
# fast setting; the blob goes into LAYOUT. Prints "digest size diff_id".
layer() {
    local layout=$1 root=$2 tarf diff digest size
    shift 2
    tarf=$work/layer.tar
    tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$tarf" "$@"
    diff=$(sha256 "$tarf")
    gzip -1 -n -c "$tarf" >"$work/layer.gz"
    rm -f "$tarf"
    digest=$(sha256 "$work/layer.gz")
    size=$(stat -c %s "$work/layer.gz")
    mv "$work/layer.gz" "$layout/blobs/sha256/$digest"
    echo "$digest $size $diff"
}

blob() { # LAYOUT FILE → "digest size", FILE moved into the layout
    local d s
    d=$(sha256 "$2")
    s=$(stat -c %s "$2")
    mv "$2" "$1/blobs/sha256/$d"
    echo "$d $s"
}

# An OCI layout with tag bench-<MIB>: module tree + 4 firmware layers.
build_image() {
    local mib=$1 layout=$2 i root l=() d s diff cfg man
    rm -rf "$layout"
    mkdir -p "$layout/blobs/sha256"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

    root=$work/l0
    local mdir=$root/opt/lib/modules/$kver
    mkdir -p "$mdir/extra" "$root/firmware/acme" "$root/usr/bin"
    for m in macvtap macvlan tap dummy; do
        cp "$modules/kernel/drivers/net/$m.ko" "$mdir/extra/"
        echo "extra/$m.ko" >>"$mdir/modules.order"
    done
    cp "$modules/modules.builtin" "$modules/modules.builtin.modinfo" "$mdir/"
    depmod -b "$root/opt" "$kver"
    printf 'board=acme-9000\nlanes=4\n' >"$root/firmware/acme/fw.conf"
    printf 'not extracted\n' >"$root/usr/bin/tool"
    l+=("$(layer "$layout" "$root" opt firmware usr)")
    rm -rf "$root"

    for i in 1 2 3 4; do
        root=$work/l$i
        mkdir -p "$root/firmware/acme"
        head -c $((mib * 1048576 / 4)) /dev/urandom >"$root/firmware/acme/blob-$i.bin"
        l+=("$(layer "$layout" "$root" firmware)")
        rm -rf "$root"
    done

    local diffs='' layers=''
    for e in "${l[@]}"; do
        read -r d s diff <<<"$e"
        diffs+="${diffs:+,}\"sha256:$diff\""
        layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$s}"
    done
    printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diffs" >"$work/config.json"
    cfg=$(blob "$layout" "$work/config.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
        "${cfg% *}" "${cfg#* }" "$layers" >"$work/manifest.json"
    man=$(blob "$layout" "$work/manifest.json")
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench-%s"}}]}' \
        "${man% *}" "${man#* }" "$mib" >"$layout/index.json"
}

registry_start "$dir/registry" >/dev/null
echo "bench pull: registry on $REGISTRY_HOST (storage $dir/registry/storage)" >&2
regblob() { echo "$dir/registry/storage/docker/registry/v2/blobs/sha256/${1:0:2}/$1/data"; }

# Seconds as "%.3f" of running the rest of the arguments.
timed() {
    local t0 t1
    t0=$(bench_now)
    "$@"
    t1=$(bench_now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# Peak RSS in MiB from a `/usr/bin/time -v` log.
rss_mib() {
    awk -F: '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"
}

run_agent() {
    local log=$1
    /usr/bin/time -v -o "$log.time" "$agent" pull --no-reboot --kernel-release "$kver" \
        --config-dir "$work/etc" --store "$work/store" </dev/null >"$log" 2>&1 ||
        { echo "bench pull: the agent failed:" >&2; cat "$log" "$log.time" >&2; return 1; }
    [[ -e $work/store/drv/$kver/current ]] || { echo "bench pull: the agent published nothing: $(cat "$log")" >&2; return 1; }
}

run_skopeo() {
    local log=$1 tag=$2
    /usr/bin/time -v -o "$log.time" skopeo --insecure-policy copy --quiet --src-tls-verify=false \
        "docker://$REGISTRY_HOST/bench/drv:$tag" "oci:$work/skopeo:$tag" </dev/null >"$log" 2>&1 ||
        { echo "bench pull: skopeo failed:" >&2; cat "$log" "$log.time" >&2; return 1; }
}

# The floor: a lower bound for any program that must hash these bytes
# and make them durable, the larger of
#   hash:  SHA-256 of every layer blob on one core (openssl, SHA-NI when the
#          CPU has it), each checked against its digest;
#   write: the same bytes written to one file on the store's filesystem
#          and fsynced once (dd, 1 MiB blocks).
# Both read the blobs from the page cache, as the registry does. Prints
# "floor hash write" in seconds.
run_floor() {
    local d got t0 t1 t2 blobs=()
    # One openssl process for all blobs: no start-up cost per blob.
    for d in "${layer_digests[@]}"; do blobs+=("$(regblob "$d")"); done
    t0=$(bench_now)
    got=$(openssl dgst -sha256 -r "${blobs[@]}" | cut -d' ' -f1)
    t1=$(bench_now)
    [[ $got == "$(printf '%s\n' "${layer_digests[@]}")" ]] ||
        { echo "bench pull: floor: the blobs do not hash to their digests: $got" >&2; return 1; }
    cat "${blobs[@]}" | dd of="$work/floor/blobs" bs=1M iflag=fullblock conv=fsync status=none
    t2=$(bench_now)
    awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { h = b - a; w = c - b; printf "%.3f %.3f %.3f", (h > w ? h : w), h, w }'
}

mib_label() { if (($1 >= 1024)); then echo "$(($1 / 1024)) GiB"; else echo "$1 MiB"; fi; }

# MiB/s of $bytes for each wall time.
mibs() { for t in "$@"; do awk -v b="$bytes" -v t="$t" 'BEGIN { print b / 1048576 / t }'; done; }

reset() {
    chmod -R u+rwX "$work/store" 2>/dev/null || true
    rm -rf "$work/store" "$work/skopeo" "$work/floor"
    mkdir -p "$work/floor"
    sync
}

# Change when build_image changes: the cached images are then rebuilt.
image_version="2 $kver"

rss_agent_medians=()
for mib in "${sizes[@]}"; do
    tag=bench-$mib
    mark=$dir/image-$mib.pushed
    if [[ ! -f $mark ]] || [[ $(cat "$mark") != "$image_version" ]]; then
        echo "bench pull: building the $mib MiB image" >&2
        build_image "$mib" "$work/layout"
        skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
            "oci:$work/layout:$tag" "docker://$REGISTRY_HOST/bench/drv:$tag"
        rm -rf "$work/layout"
        echo "$image_version" >"$mark"
    fi
    # Layers as the registry serves them (the manifest the agent will read).
    manifest=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY_HOST/bench/drv:$tag")
    mapfile -t layer_digests < <(jq -r '.layers[].digest | sub("^sha256:"; "")' <<<"$manifest")
    bytes=$(jq '[.layers[].size] | add' <<<"$manifest")

    mkdir -p "$work/etc"
    printf 'image = "%s/bench/drv:%s"\nmodules = ["macvtap"]\nfirmware_dir = "/firmware"\n[pull]\ninsecure = true\n' \
        "$REGISTRY_HOST" "$tag" >"$work/etc/drv.toml"

    reps=${BENCH_REPS:-$([[ $mib -ge 1024 ]] && echo 3 || echo 5)}
    echo "bench pull: $mib MiB ($bytes bytes in ${#layer_digests[@]} layers), warm-up + $reps repetitions" >&2
    logs=$dir/logs/$mib
    mkdir -p "$logs"
    reset; run_agent "$logs/warm-agent"
    reset; run_skopeo "$logs/warm-skopeo" "$tag"
    reset; run_floor >/dev/null

    aw=() sw=() fw=() fh=() fd=() ar=() sr=() wr=() tr=()
    orders=("a s f" "s f a" "f a s")
    for ((r = 0; r < reps; r++)); do
        for side in ${orders[r % 3]}; do
            reset
            case $side in
            a) aw+=("$(timed run_agent "$logs/agent-$r")"); ar+=("$(rss_mib "$logs/agent-$r.time")") ;;
            s) sw+=("$(timed run_skopeo "$logs/skopeo-$r" "$tag")"); sr+=("$(rss_mib "$logs/skopeo-$r.time")") ;;
            f) fl=$(run_floor); read -r f h w <<<"$fl"; fw+=("$f"); fh+=("$h"); fd+=("$w") ;;
            esac
        done
        # Ratios of the runs of one repetition, which ran back to back.
        wr+=("$(awk -v a="${aw[r]}" -v b="${sw[r]}" 'BEGIN { print a / b }')")
        tr+=("$(awk -v a="${aw[r]}" -v f="${fw[r]}" 'BEGIN { print 100 * f / a }')")
        echo "  rep $((r + 1)): agent ${aw[r]} s ${ar[r]} MiB, skopeo ${sw[r]} s ${sr[r]} MiB, floor ${fw[r]} s (hash ${fh[r]} s, write+fsync ${fd[r]} s)" >&2
    done
    reset

    label="pull $(mib_label "$mib")"
    wmed=$(bench_median "${wr[@]}")
    bench_row "$label: wall, agent vs skopeo copy" \
        "$(bench_stats '%.2f' "${aw[@]}") s" "$(bench_stats '%.2f' "${sw[@]}") s" \
        "$(bench_stats '%.2f' "${wr[@]}")×" "≤ 1.00×" \
        "$(awk -v m="$wmed" 'BEGIN { print (m <= 1.0) ? "yes" : "no" }')"
    armed=$(bench_median "${ar[@]}")
    rss_agent_medians+=("$armed")
    bench_row "$label: peak RSS, agent vs skopeo" \
        "$(bench_stats '%.1f' "${ar[@]}") MiB" "$(bench_stats '%.1f' "${sr[@]}") MiB" \
        "$(bench_ratio "$armed" "$(bench_median "${sr[@]}")")" "≤ 24 MiB" \
        "$(awk -v m="$(printf '%s\n' "${ar[@]}" | sort -g | tail -n1)" 'BEGIN { print (m <= 24) ? "yes" : "no" }')"
    mapfile -t at < <(mibs "${aw[@]}")
    mapfile -t ft < <(mibs "${fw[@]}")
    tmed=$(bench_median "${tr[@]}")
    bench_row "$label: throughput, agent vs SHA-256+fsync floor" \
        "$(bench_stats '%.0f' "${at[@]}") MiB/s" "$(bench_stats '%.0f' "${ft[@]}") MiB/s" \
        "$(bench_stats '%.0f' "${tr[@]}") %" "≥ 70 %" \
        "$(awk -v m="$tmed" 'BEGIN { print (m >= 70) ? "yes" : "no" }')"
done

# Flat: the largest image's median peak RSS within 2 MiB of the smallest's.
if ((${#rss_agent_medians[@]} > 1)); then
    lo=${rss_agent_medians[0]} hi=${rss_agent_medians[-1]}
    bench_row "pull: agent peak RSS, $(mib_label "${sizes[-1]}") vs $(mib_label "${sizes[0]}") image" \
        "$hi MiB" "$lo MiB" "$(bench_ratio "$hi" "$lo")" "flat (± 2 MiB)" \
        "$(awk -v a="$hi" -v b="$lo" 'BEGIN { d = a - b; if (d < 0) d = -d; print (d <= 2) ? "yes" : "no" }')"
fi
