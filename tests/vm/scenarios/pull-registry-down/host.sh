# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# The image is pushed, then the registry is stopped before the guest boots:
# the node comes up with its registry down. The guest asks for it back
# (host_on_guest) before its reboot; the registry then serves the same
# storage on the same port, which is what the guest's forward points at.
SCN_AGENT=1
SCN_BOOTS=2
SCN_DISK_MB=64

scenario_prepare() {
    local root=$1 out=$3
    SCN_OUT=$out
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    serve_image "$out" dummy kmmtest_params kmmtest_fw >"$root/opt/kmmtest/expect/fw_line"
    cp "$out/digest" "$root/opt/kmmtest/expect/digest"
    registry_stop
    host_on_guest registry-up "$out" registry_again "$out" "$SCN_NET_PORT"
    dummy_pull_config "$root" 4 late
    # pull asks systemd for the reboot; record the request (no systemd here).
    reboot_recorder "$root"
}

registry_again() {
    registry_start "$1/registry" --port "$2"
    echo "$REGISTRY_PID" >"$1/registry-again.pid"
}

scenario_cleanup() {
    host_watchers_stop "$SCN_OUT"
    if [[ -f $SCN_OUT/registry-again.pid ]]; then
        kill "$(cat "$SCN_OUT/registry-again.pid")" 2>/dev/null || true
    fi
    registry_stop
}
