#!/bin/sh
# Instructions (Ir) and locked read-modify-writes (callgrind's "global bus events", Ge:
# every atomic instruction with a LOCK prefix, xchg included) per operation of one
# workload on one runtime, from the timing binary (no counting allocator, no tracepoint,
# so neither adds instructions or atomics of its own). Each figure is the difference
# between a run at 2n and a run at n, divided by n, so set-up and tear-down cancel out.
#
#   cargo build --release -p trellis-bench --bins
#   bench/callgrind.sh nursery_empty trellis 100000
#   bench/callgrind.sh spawn_one tokio 20000
#
# Needs valgrind. Under valgrind a vDSO clock read is a real syscall, so a workload that
# reads the clock shows few instructions for it: the natively measured cost of a clock read
# is in BENCHMARKS.md.
set -eu
w="$1"
r="$2"
n="${3:-100000}"
exe="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release/trellis-bench-timing"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
events() {
    valgrind --tool=callgrind --collect-bus=yes --callgrind-out-file="$dir/out.$1" \
        "$exe" __child "$w" "$r" "$1" 0 timing >/dev/null 2>"$dir/err.$1" || {
        cat "$dir/err.$1" >&2
        exit 1
    }
    # "summary: <Ir> <Ge>"
    sed -n 's/^summary: //p' "$dir/out.$1"
}
set -- $(events "$n") $(events "$((2 * n))")
awk -v ir1="$1" -v ge1="${2:-0}" -v ir2="$3" -v ge2="${4:-0}" -v n="$n" -v w="$w" -v r="$r" \
    'BEGIN { printf "%s on %s: %.0f Ir/op, %.2f locked RMWs/op (n = %d and %d)\n", w, r, (ir2 - ir1) / n, (ge2 - ge1) / n, n, 2 * n }'
