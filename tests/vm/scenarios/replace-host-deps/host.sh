# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A driver image whose module needs an in-tree module (crc16) the image does
# not carry.
SCN_AGENT=1

# CRC-16 (ARC: reflected polynomial 0xA001, initial value 0) of a string,
# computed here independently of the kernel.
crc16_arc() {
    local s=$1 c=0 i b k
    for ((i = 0; i < ${#s}; i++)); do
        printf -v b '%d' "'${s:i:1}"
        c=$((c ^ b))
        for ((k = 0; k < 8; k++)); do
            if ((c & 1)); then c=$(((c >> 1) ^ 0xA001)); else c=$((c >> 1)); fi
        done
    done
    echo "$c"
}

scenario_prepare() {
    local root=$1 out=$3
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1"
    kmm_tree "$out/image-src" kmmtest_hostdep >/dev/null
    store_tree "$out/image-src" "$root/var/lib/kmm-day1" kmmtest >/dev/null
    crc16_arc kmm-day1 >"$root/opt/kmmtest/expect/crc"
    cat >"$root/etc/kmm-day1/kmmtest.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/hostdep:\${KERNEL_FULL_VERSION}"
modules = ["kmmtest_hostdep"]
TOML
}
