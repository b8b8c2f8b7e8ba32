#!/usr/bin/env bash
# bench generator: wall time of the release generator (`make generator`)
# writing one MachineConfig for examples/sfc.toml, warm (hyperfine's warm-up
# run first, so binary and inputs are in the page cache). A second row,
# the node config alone (--format config: same input parsing and checks, no
# agent to compress and embed), shows how much of it is the agent.
# (--no-compress cannot stand in: the 2.1 MB MachineConfig is refused.)
# Repetitions: BENCH_REPS (default 5; 20 for the fast variant).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

generator=${KMM_DAY1_GENERATOR:-$PWD/target/release/kmm-day1}
[[ -x $generator ]] || { echo "bench generator: no release generator at $generator: run \`make generator\`" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "bench generator: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }

out=$BENCH_DIR/generator
mkdir -p "$out"

# Wall times (seconds, one per line) of RUNS runs of a command, after one warm-up.
times() {
    local name=$1 runs=$2
    shift 2
    hyperfine --style none --warmup 1 --runs "$runs" --export-json "$out/$name.json" \
        --command-name "$name" -- "$*" >"$out/$name.log" 2>&1 ||
        { echo "bench generator: $name failed:" >&2; cat "$out/$name.log" >&2; return 1; }
    jq -r '.results[0].times[]' "$out/$name.json"
}

gen="$generator generate --config examples/sfc.toml --pool worker -o $out/sfc.yaml"
mapfile -t full < <(times machineconfig "${BENCH_REPS:-5}" "$gen")
mapfile -t plain < <(times node-config "${BENCH_REPS:-20}" "$gen --format config")
((${#full[@]} && ${#plain[@]})) || { echo "bench generator: hyperfine reported no times" >&2; exit 1; }

ms() { for t in "$@"; do awk -v t="$t" 'BEGIN { print t * 1000 }'; done; }
mapfile -t full_ms < <(ms "${full[@]}")
mapfile -t plain_ms < <(ms "${plain[@]}")
med=$(bench_median "${full_ms[@]}")
bench_row "generator: one MachineConfig (examples/sfc.toml, x86_64, warm)" \
    "$(bench_stats '%.0f' "${full_ms[@]}") ms" "—" "—" "≤ 50 ms" \
    "$(awk -v m="$med" 'BEGIN { print (m <= 50) ? "yes" : "no" }')"
bench_row "generator: node config only (--format config, no agent)" \
    "$(bench_stats '%.0f' "${plain_ms[@]}") ms" "—" "—" "—" "—"
