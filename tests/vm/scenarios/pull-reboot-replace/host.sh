# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# The driver image in the host registry; the guest reaches it only as
# 10.0.2.100:5000 (guestfwd). The store is on a disk that survives the reboot.
SCN_AGENT=1
SCN_BOOTS=2
SCN_DISK_MB=64

scenario_prepare() {
    local root=$1 out=$3
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    serve_image "$out" dummy kmmtest_params kmmtest_fw >"$root/opt/kmmtest/expect/fw_line"
    cp "$out/digest" "$root/opt/kmmtest/expect/digest"
    dummy_pull_config "$root" 3 pulled
    # pull asks systemd for the reboot (after_pull = "reboot", the default);
    # this guest has no systemd: record the request, as a queued job would,
    # and let the test reboot once the agent has exited.
    reboot_recorder "$root"
}

scenario_cleanup() {
    registry_stop
}
