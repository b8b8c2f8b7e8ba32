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
