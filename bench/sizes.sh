#!/usr/bin/env bash
# bench sizes: the release static agents as `make agents` builds them
# (x86_64 and aarch64 musl), compressed the plain way (gzip -9, base64 of
# it) and the way the release generator embeds them, and the complete
# MachineConfig for examples/sfc.toml. Then `cargo bloat --crates` of the
# x86_64 agent built as agent/build-release.sh builds it (nightly,
# .cargo/agent-size.toml), unstripped so symbols can be attributed: printed
# to stderr and kept in $BENCH_DIR/bloat.txt, its top crates as rows.
# BENCH_BLOAT=0 skips the breakdown (it builds the agent once more).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

generator=${KMM_DAY1_GENERATOR:-$PWD/target/release/kmm-day1}
[[ -x $generator ]] || { echo "bench sizes: no release generator at $generator: run \`make generator\`" >&2; exit 1; }
agent_path=$(sed -n 's/^pub const AGENT_PATH: &str = "\(.*\)";/\1/p' config/src/lib.rs)
[[ -n $agent_path ]] || { echo "bench sizes: AGENT_PATH not found in config/src/lib.rs" >&2; exit 1; }

bytes() { bench_bytes "$1"; }

for arch in x86_64 aarch64; do
    var=KMM_DAY1_AGENT_${arch^^}
    bin=${!var:-$PWD/target/$arch-unknown-linux-musl/release/kmm-day1-agent}
    [[ -x $bin ]] || { echo "bench sizes: no static agent at $bin: run \`make agents\`" >&2; exit 1; }
    if readelf -S "$bin" | grep -q '\.symtab'; then
        echo "bench sizes: $bin has a symbol table: not the stripped release build" >&2
        exit 1
    fi
    size=$(stat -c %s "$bin")
    gz=$(gzip -9 -n -c "$bin" | wc -c)
    b64=$(gzip -9 -n -c "$bin" | base64 -w0 | wc -c)
    mc=$BENCH_DIR/sfc-$arch.yaml
    "$generator" generate --config examples/sfc.toml --pool worker --arch "$arch" --agent "$bin" -o "$mc" 2>/dev/null
    # The agent's contents.source in the MachineConfig's Ignition: the
    # base64 text after the data: URL's prefix, as it travels.
    # shellcheck disable=SC2016 # $p is yq's variable
    embedded=$(yq -r --arg p "$agent_path" '.spec.config.storage.files[] | select(.path == $p) | .contents.source' "$mc" |
        sed 's/^data:[^,]*,//' | tr -d '\n' | wc -c)
    # shellcheck disable=SC2016
    gzip_kind=$(yq -r --arg p "$agent_path" '.spec.config.storage.files[] | select(.path == $p) | .contents.compression // "none"' "$mc")
    [[ $gzip_kind == gzip ]] || { echo "bench sizes: the generator embedded the $arch agent without gzip ($gzip_kind)" >&2; exit 1; }
    mcsize=$(stat -c %s "$mc")
    bench_row "agent $arch: stripped binary" "$(bytes "$size")" "—" "—" "—" "—"
    bench_row "agent $arch: gzip -9" "$(bytes "$gz")" "—" "—" "—" "—"
    bench_row "agent $arch: base64(gzip -9)" "$(bytes "$b64")" "—" "—" "—" "—"
    bench_row "agent $arch: embedded by the generator (base64 of zopfli gzip)" "$(bytes "$embedded")" \
        "$(bytes "$b64")" "$(bench_ratio "$embedded" "$b64")" "—" "—"
    # Issue 8's goal is for the whole MachineConfig (bench/lib.sh).
    bench_mc_row "$arch" "$mcsize"
done

[[ ${BENCH_BLOAT:-1} == 0 ]] && exit 0

# cargo bloat --crates of the agent as agent/build-release.sh builds it for
# x86_64 (nightly, build-std, panic=immediate-abort), except that the
# profile's strip is turned off: bloat reads the symbol table. Its own
# target dir, so the release agents above stay the ones make built.
bloat=$BENCH_DIR/bloat.txt
target=x86_64-unknown-linux-musl
if ! rustup run nightly cargo bloat --version >/dev/null 2>&1; then
    echo "bench sizes: cargo-bloat missing: installing it (cargo install --locked cargo-bloat)" >&2
    cargo install --locked cargo-bloat >&2
fi
echo "bench sizes: cargo bloat --crates (builds the agent unstripped, a few minutes the first time)" >&2
if ! CARGO_PROFILE_RELEASE_STRIP=false rustup run nightly cargo bloat --config .cargo/agent-size.toml \
    --release --locked -p kmm-day1-agent --target "$target" \
    --target-dir "${CARGO_TARGET_DIR:-$PWD/target}/bench-bloat" --crates -n 12 >"$bloat" 2>"$bloat.log"; then
    echo "bench sizes: cargo bloat failed (see $bloat.log):" >&2
    tail -n 20 "$bloat.log" >&2
    exit 1
fi
{
    echo
    echo "cargo bloat --crates, x86_64 agent (nightly build of agent/build-release.sh, unstripped):"
    cat "$bloat"
} >&2
# Rows: " File  .text     Size Crate" lines, e.g. "14.2%  30.1% 233.5KiB rustls".
awk '$1 ~ /%$/ && $2 ~ /%$/ && NF >= 4 { c = $4; for (i = 5; i <= NF; i++) c = c " " $i; print $3 "\t" $2 "\t" c }' "$bloat" |
    head -n 8 | while IFS=$'\t' read -r sz text crate; do
        bench_row "agent x86_64 .text by crate: $crate" "$sz ($text of .text)" "—" "—" "—" "—"
    done
