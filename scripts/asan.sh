#!/usr/bin/env bash
# AddressSanitizer (with LeakSanitizer) over the library's unit tests and the behaviour
# tests (issue 16): std is rebuilt with the sanitizer (`-Zbuild-std`), so nightly and its
# `rust-src` component are needed:
#
#   rustup toolchain install nightly && rustup +nightly component add rust-src
#   scripts/asan.sh                 # the unit tests and every behaviour test file but ui.rs
#   scripts/asan.sh nursery cancel  # just these test files (`lib`: the unit tests)
#
# Passes when no test fails and the sanitizer reports nothing (it aborts the binary on
# the first error and, at exit, on any leak). The build goes to its own target directory
# (everything is instrumented), $CARGO_TARGET_DIR/asan by default.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${ASAN_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/asan}
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export TRELLIS_HANG_SCALE=${TRELLIS_HANG_SCALE:-5}

# file::test that leak on purpose (`mem::forget` of a started future; as in
# scripts/valgrind.sh): skipped in the main run, then run alone with the leak check off
# (ASan's memory errors still count), instead of a suppression that would hide the same
# leak anywhere else.
LEAKY=(
    cancel::a_forgotten_shield_keeps_at_most_its_own_unit_alive
    thread::a_leaked_call_stops_holding_autojump_back_once_it_returns
)

if [ $# -eq 0 ]; then
    set -- lib $(ls integration/tests/*.rs | xargs -n1 basename | sed 's/\.rs$//' | grep -vx ui)
fi
args=()
for name in "$@"; do
    if [ "$name" = lib ]; then
        args+=(-p trellis --lib)
    else
        args+=(-p trellis-integration --test "$name")
    fi
done

start=$(date +%s)
log=$CARGO_TARGET_DIR/asan.log
mkdir -p "$CARGO_TARGET_DIR"
set +e
skips=()
for l in "${LEAKY[@]}"; do skips+=(--skip "${l#*::}"); done
cargo +nightly test -Zbuild-std --target "$TARGET" "${args[@]}" --no-fail-fast -- "${skips[@]}" 2>&1 \
    | tee "$log" | grep -E '^(test result|     Running|error)|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY: AddressSanitizer'
status=${PIPESTATUS[0]}
set -e
for l in "${LEAKY[@]}"; do
    file=${l%%::*}
    [[ " $* " == *" $file "* ]] || continue
    ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 cargo +nightly test -Zbuild-std --target "$TARGET" \
        -p trellis-integration --test "$file" -- --exact "${l#*::}" >>"$log" 2>&1 || status=1
    echo "$l (leaks on purpose), leak check off: $(grep -o 'test result: [a-z]*\. [0-9]* passed; [0-9]* failed' "$log" | tail -1)"
done
reports=$(grep -c -E 'ERROR: (AddressSanitizer|LeakSanitizer)' "$log" || true)
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "asan.sh: $# targets, $passed tests passed, $failed failed, $reports sanitizer reports, $(( $(date +%s) - start ))s (log: $log)"
[ "$status" -eq 0 ] && [ "$reports" -eq 0 ]
