# shellcheck shell=bash disable=SC2034 # SCN_* are read by tests/vm/lib/scenario.sh
# Host side of the VM benchmark (bench/vm.sh), run by the VM harness as a
# tier-2 scenario: a systemd node configured by the real Ignition from the
# generator's config. Boot 1 pulls from the host registry and reboots; boot 2
# runs the replace comparison; boots 2…1+2·pairs alternate with and without
# kmm-day1-replace.service for the boot critical path.
SCN_TIER=2
SCN_AGENT=1
SCN_BOOTS=$((1 + 2 * BENCH_VM_PAIRS))
SCN_TIMEOUT=$BENCH_VM_TIMEOUT

# The set both sides load: three modules, one of which (kmmtest_user) needs
# kmmtest_dep through the image's modules.dep, so four .ko files each run.
BENCH_MODULES="dummy kmmtest_params kmmtest_user"

# kmod's modprobe and the libraries it links, into an image root: a KMM
# driver image is built FROM a base with kmod (the seed approach runs the
# image's own modprobe). The host is the same Debian release as the guest.
bench_add_kmod() {
    local r=$1 lib
    mkdir -p "$r/usr/bin" "$r/usr/sbin"
    cp "$(readlink -f /usr/sbin/modprobe)" "$r/usr/bin/kmod"
    ln -s ../bin/kmod "$r/usr/sbin/modprobe"
    for lib in $(ldd "$r/usr/bin/kmod" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
    done
}

scenario_prepare() {
    local root=$1 out=$3 o=$1/opt/kmmtest/overlay
    registry_start "$out/registry"
    SCN_NET_PORT=$REGISTRY_PORT
    # shellcheck disable=SC2086 # a word list
    kmm_tree "$out/image-src" $BENCH_MODULES kmmtest_dep >/dev/null
    bench_add_kmod "$out/image-src"
    oci_image "$out/image-src" "$out/oci" "$RELEASE"
    umoci config --image "$out/oci:$RELEASE" --config.env=PATH=/usr/sbin:/usr/bin:/sbin:/bin
    push_image "$out/oci" "$RELEASE" kmmtest/bench >"$out/digest"
    local image=10.0.2.100:5000/kmmtest/bench:$RELEASE
    cat >"$out/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/bench:\${KERNEL_FULL_VERSION}"
modules = [$(for m in $BENCH_MODULES; do printf '"%s", ' "$m"; done | sed 's/, $//')]
in_tree_remove = ["dummy"]

[pull]
insecure = true
TOML
    tier2_ignition kmmtest "$out/kmmtest.toml" "$o"

    mkdir -p "$o/opt/kmmtest/bench" "$o/etc/systemd/system/systemd-networkd.service.d"
    echo "$BENCH_VM_REPS" >"$o/opt/kmmtest/bench/reps"
    echo "$BENCH_VM_PAIRS" >"$o/opt/kmmtest/bench/pairs"
    echo "$image" >"$o/opt/kmmtest/bench/image"
    echo "$BENCH_MODULES" >"$o/opt/kmmtest/bench/modules"
    # Nothing in this minimal guest pulls network-pre.target in once the
    # replace unit is disabled (on a node the network stack does); the same
    # drop-in in both variants makes the target part of every boot.
    printf '[Unit]\nWants=network-pre.target\n' \
        >"$o/etc/systemd/system/systemd-networkd.service.d/bench-network-pre.conf"
    # One oneshot unit per side, one instance per run (bench-<side>@<run>):
    # the journal's job start and job done entries of an instance are that
    # run's start and end. Each side removes the in-tree dummy and loads the
    # set; the guest loads the in-tree dummy again before every run.
    local tree=/var/lib/kmm-day1/kmmtest/$RELEASE/current
    bench_unit "$o" ours "the agent's replace (as kmm-day1-replace.service runs it)" \
        "ExecStart=/usr/local/bin/kmm-day1-agent replace"
    bench_unit "$o" modprobe "modprobe -d <the store's extracted tree> after modprobe -r of the in-tree one" \
        "ExecStartPre=/usr/sbin/modprobe -r dummy" \
        "ExecStart=/usr/sbin/modprobe -a -d $tree $BENCH_MODULES"
    bench_unit "$o" podman "the seed approach, podman run --privileged --entrypoint modprobe IMAGE -d /opt" \
        "ExecStartPre=/usr/sbin/modprobe -r dummy" \
        "ExecStart=/usr/bin/podman run --privileged --entrypoint modprobe $image -a -d /opt $BENCH_MODULES"
}

# bench_unit OVERLAY SIDE DESCRIPTION LINE…: OVERLAY/etc/systemd/system/bench-SIDE@.service.
bench_unit() {
    local o=$1 side=$2 desc=$3
    shift 3
    {
        printf '[Unit]\nDescription=kmm-day1 bench %%i: %s\n\n[Service]\nType=oneshot\nTimeoutStartSec=600\n' "$desc"
        printf '%s\n' "$@"
    } >"$o/etc/systemd/system/bench-$side@.service"
}

scenario_cleanup() {
    registry_stop
}
