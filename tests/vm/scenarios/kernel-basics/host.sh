# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# The firmware file kmmtest_fw asks for, with contents unique to this run so
# the guest's comparison cannot pass on a stale or built-in value.
scenario_prepare() {
    local root=$1
    mkdir -p "$root/opt/kmmtest/fw/kmmtest"
    printf 'kmm-day1 test firmware %s\npadding\n' "$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" \
        >"$root/opt/kmmtest/fw/kmmtest/kmmtest_fw.bin"
}
