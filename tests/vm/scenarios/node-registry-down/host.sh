# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A systemd node, set up by the generator's Ignition config, whose registry is
# down for the whole boot (the forward's far end is a port nothing listens
# on). The check unit here is not ordered after the pull, unlike the shared
# one, so it can watch the boot while the pull still retries.
SCN_TIER=2
SCN_AGENT=1
SCN_BOOTS=1
SCN_TIMEOUT=420

scenario_prepare() {
    local root=$1 out=$3 o=$1/opt/kmmtest/overlay
    # A port that was just free: the registry is started only to get one.
    registry_start "$out/registry"
    SCN_NET_PORT=$REGISTRY_PORT
    registry_stop
    cat >"$out/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy"]

[pull]
insecure = true
TOML
    tier2_ignition kmmtest "$out/kmmtest.toml" "$o"
    # A shorter budget than a node's 840 s (the drop-in a site would write
    # to shorten TimeoutSec= sets it too), still long enough that the boot
    # reaches multi-user.target well before the pull gives up.
    mkdir -p "$o/etc/systemd/system/kmm-day1-pull.service.d"
    printf '[Service]\nEnvironment=KMM_DAY1_PULL_BUDGET_SECS=60\nTimeoutSec=120\n' \
        >"$o/etc/systemd/system/kmm-day1-pull.service.d/10-kmmtest.conf"
    # The check runs beside the pull: not ordered after it, and (with
    # DefaultDependencies=no) not holding multi-user.target itself.
    cat >"$o/etc/systemd/system/kmmtest-check.service" <<'UNIT'
[Unit]
Description=kmm-day1 VM test: checks while the pull retries
DefaultDependencies=no
Requires=sysinit.target
After=sysinit.target basic.target network-online.target kmm-day1-replace.service
Wants=network-online.target
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
ExecStart=/opt/kmmtest/check.sh
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
UNIT
}

scenario_cleanup() {
    registry_stop
}
