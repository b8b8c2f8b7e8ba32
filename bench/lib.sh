# shellcheck shell=bash
# Shared by bench/run and bench/*.sh (sourced, not executed).
#
# Every section appends rows to "$BENCH_ROWS" with bench_row; bench/run prints
# them as one table at the end. A row is six tab-separated cells:
#   what | ours | reference | ratio (ours/reference) | goal | met
# Times are medians with min–max of the repetitions; A/B runs alternate so a
# slow moment of this (noisy, shared) machine hits both sides.

: "${BENCH_ROWS:?bench/run sets BENCH_ROWS}"

bench_row() {
    [ $# -eq 6 ] || { echo "bench_row: want 6 cells, got $#: $*" >&2; return 1; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_ROWS"
}

# Median of numbers (one per argument).
bench_median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit 1
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# "median (min–max)" formatted with FMT (printf format for one number).
bench_stats() {
    local fmt=$1; shift
    local med min max
    med=$(bench_median "$@")
    min=$(printf '%s\n' "$@" | sort -g | head -n1)
    max=$(printf '%s\n' "$@" | sort -g | tail -n1)
    # shellcheck disable=SC2059
    printf "$fmt ($fmt–$fmt)" "$med" "$min" "$max"
}

# ours/reference of two medians, two decimals.
bench_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "—"; else printf "%.2f×", a / b }'
}

# Seconds since the epoch with nanoseconds, for wall times.
bench_now() { date +%s.%N; }

# "1,234,567 B (1205.6 KiB)"
bench_bytes() {
    LC_ALL=C awk -v n="$1" 'BEGIN {
    s = sprintf("%d", n); o = ""
    while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
    printf "%s%s B (%.1f KiB)", s, o, n / 1024 }'
}

# Issue 8's size goal: the whole MachineConfig ≤ 900 KiB with every feature
# in (the generator refuses above 1.25 MiB). tests/agent_size.rs guards the
# agents against growth with budgets above this goal; this row is where the
# goal itself is judged, so it says `no` for as long as it is not met.
BENCH_MC_GOAL_BYTES=$((900 * 1024))

# The MachineConfig row of ARCH for a MachineConfig of BYTES bytes.
bench_mc_row() {
    local arch=$1 size=$2 met=no
    [[ $size =~ ^[0-9]+$ ]] || { echo "bench_mc_row: size '$size' is not a byte count" >&2; return 1; }
    [ "$size" -le "$BENCH_MC_GOAL_BYTES" ] && met=yes
    bench_row "MachineConfig examples/sfc.toml ($arch)" "$(bench_bytes "$size")" "—" "—" \
        "≤ 900 KiB (refused > 1.25 MiB)" "$met"
}

# Tab-separated rows (a header row first) on stdin as a Markdown table.
bench_table() {
    awk -F'\t' '
    # Width in characters: UTF-8 continuation bytes (×, –, ≤) take no column.
    function width(s) { gsub(/[\200-\277]/, "", s); return length(s) }
    function pad(s, n) { while (width(s) < n) s = s " "; return s }
    { for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (width($i) > w[i]) w[i] = width($i) } n = NR }
    END {
        for (r = 1; r <= n; r++) {
            line = "|"
            for (i = 1; i <= 6; i++) line = line " " pad(cell[r, i], w[i]) " |"
            print line
            if (r == 1) { line = "|"; for (i = 1; i <= 6; i++) { d = ""; for (k = 0; k < w[i] + 2; k++) d = d "-"; line = line d "|" } print line }
        }
    }'
}
