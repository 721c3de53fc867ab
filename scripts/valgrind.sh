#!/usr/bin/env bash
# Valgrind memcheck over the behaviour tests (issue 16): every test binary of
# `trellis-integration` (all of `integration/tests/*.rs` but `ui.rs`, whose trybuild cases
# run rustc) and the library's unit tests, each in one valgrind run. Passes when every run
# reports 0 errors and 0 bytes definitely lost; prints a line per binary and a total.
#
#   scripts/valgrind.sh                 # every binary
#   scripts/valgrind.sh nursery cancel  # just these test files (`lib`: the unit tests)
#
# Needs valgrind (apt-get install valgrind). Tests run natively first (a plain debug
# build), then under memcheck, about 20-50x slower: the watchdog of the tests is
# scaled with TRELLIS_HANG_SCALE (integration/tests/common/mod.rs). Logs: $LOG_DIR.
#
# Suppressions (scripts/valgrind.supp): only ring's AES-GCM assembly, whose output memcheck
# cannot follow (the TLS tests; the file says which frames and why). Possibly-lost and
# still-reachable blocks are not errors (`--errors-for-leak-kinds=definite`): the test
# harness's and std's per-process allocations (thread-locals, the panic hook, the output
# capture) are still reachable at exit by design. The tests that leak on purpose
# (`mem::forget` of a started future, LEAKY below) run in a second valgrind run of their
# binary with the leak check off (memory errors still count), instead of a suppression
# that would hide the same leak anywhere else.
set -euo pipefail

# file::test that leak on purpose (as in scripts/miri.sh).
LEAKY=(
    cancel::a_forgotten_shield_keeps_at_most_its_own_unit_alive
    thread::a_leaked_call_stops_holding_autojump_back_once_it_returns
)
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }

LOG_DIR=${LOG_DIR:-${CARGO_TARGET_DIR:-target}/valgrind}
mkdir -p "$LOG_DIR"
export TRELLIS_HANG_SCALE=${TRELLIS_HANG_SCALE:-30}

# Not by default: ui.rs (trybuild runs rustc).
if [ $# -eq 0 ]; then
    set -- lib $(ls integration/tests/*.rs | xargs -n1 basename | sed 's/\.rs$//' | grep -vx ui)
fi

# Build the binaries and learn their paths from cargo's JSON messages.
declare -A bins=()
for name in "$@"; do
    if [ "$name" = lib ]; then
        args=(-p trellis --lib)
    else
        args=(-p trellis-integration --test "$name")
    fi
    bin=$(cargo test "${args[@]}" --no-run --message-format=json 2>/dev/null \
        | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
    [ -n "$bin" ] || { echo "valgrind.sh: no test binary for $name" >&2; exit 2; }
    bins[$name]=$bin
done

failed=0
total_errors=0
total_lost=0
start_all=$(date +%s)
memcheck() {
    valgrind --tool=memcheck --error-exitcode=99 --suppressions=scripts/valgrind.supp "$@"
}

for name in "$@"; do
    log="$LOG_DIR/$name.log"
    start=$(date +%s)
    status=0
    skips=() leaky=()
    for l in "${LEAKY[@]}"; do
        if [ "${l%%::*}" = "$name" ]; then skips+=(--skip "${l#*::}"); leaky+=("${l#*::}"); fi
    done
    memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
        --log-file="$log" "${bins[$name]}" --test-threads=2 "${skips[@]}" >"$log.out" 2>&1 || status=$?
    for t in "${leaky[@]}"; do
        memcheck --leak-check=no --log-file="$log.leaky" "${bins[$name]}" --exact "$t" \
            >>"$log.out" 2>&1 || status=$?
        leaky_errors=$(grep -o 'ERROR SUMMARY: [0-9,]*' "$log.leaky" | tail -1 | grep -o '[0-9,]*$' | tr -d ,)
        echo "  $name: $t (leaks on purpose) without the leak check: ${leaky_errors:-?} errors"
        [ "${leaky_errors:-1}" = 0 ] || failed=1
    done
    secs=$(( $(date +%s) - start ))
    errors=$(grep -o 'ERROR SUMMARY: [0-9,]*' "$log" | tail -1 | grep -o '[0-9,]*$' | tr -d ,)
    lost=$(grep -o 'definitely lost: [0-9,]* bytes' "$log" | tail -1 | grep -o '[0-9,]* bytes' | tr -d ', bytes')
    errors=${errors:-?}; lost=${lost:-0}
    tests=$(grep -o 'test result: [a-zA-Z]*\. [0-9]* passed; [0-9]* failed; [0-9]* ignored' "$log.out" | head -1)
    printf '%-16s %3ss  errors: %s  definitely lost: %s bytes  (%s; exit %s)\n' \
        "$name" "$secs" "$errors" "$lost" "${tests:-no test summary}" "$status"
    if [ "$status" -ne 0 ] || [ "$errors" != 0 ] || [ "$lost" != 0 ]; then
        failed=1
        echo "  see $log and $log.out" >&2
    fi
    [ "$errors" = "?" ] || total_errors=$((total_errors + errors))
    total_lost=$((total_lost + lost))
done
echo "valgrind.sh: ${#bins[@]} binaries, $total_errors errors, $total_lost bytes definitely lost, $(( $(date +%s) - start_all ))s"
exit $failed
