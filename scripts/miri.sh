#!/usr/bin/env bash
# The behaviour tests under Miri (issue 16): undefined behaviour, data races and leaks in
# trellis's runtime, on the tests that need no socket (Miri cannot make one non-blocking).
#
#   rustup toolchain install nightly && rustup +nightly component add miri
#   scripts/miri.sh                 # the library's unit tests and the files below
#   scripts/miri.sh nursery cancel  # just these test files (`lib`: the unit tests)
#
# Miri is about 100x slower than a native run, so the tests whose work is sized for a
# native run (a hundred thousand children, every cancellation point of a long exchange,
# thousands of cross-thread wakes) are skipped here (SLOW below); they run natively in
# `cargo test`. Tests that leak on purpose (`mem::forget` of a started future, to show
# what a leak does) run in a second pass with Miri's leak check off (LEAKY below); every
# other test runs with it on, so any leak there fails the script.
#
# Runs up to $JOBS files at once (default 2); prints each file's time and a total.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri.sh: needs nightly with Miri: rustup +nightly component add miri" >&2
    exit 2
fi

# The test files that need no socket, /proc or source file (Miri isolates the program
# from the file system and the network). Not here: net, net_fds, serve, happy_eyeballs,
# tls, signal (sockets), baseline and thread (they count /proc/self/task; park.rs and
# from_thread.rs run to_thread under Miri instead), api_notes, architecture, examples
# and ui (source files, rustc).
FILES=(nursery cancel timeouts context sync channel wakers combinators errors finally
       testing time runtime from_thread park macros)

# Skipped here: a substring of the test's name, matched by `--skip`. Sized for a native
# run (each takes minutes under Miri), or needing what isolation forbids.
SLOW=(
    a_hundred_thousand_children_are_spawned_and_joined
    one_wake_polls_one_child_among_a_hundred_thousand
    nothing_is_lost_when_sends_and_receives_are_cancelled_at_every_point
    a_receive_nobody_will_ever_answer_is_reported_as_a_deadlock
    wakes_from_another_thread_during_the_nursery_poll_are_not_lost
    timeouts_that_do_not_fire_leave_no_timers_behind
    many_variables_keep_their_own_values
    # runs the test binary as a child process (`current_exe`)
    the_failures_beside_a_resumed_panic_are_written_to_stderr
)

# file::test that leak on purpose (run with -Zmiri-ignore-leaks, alone).
LEAKY=(
    cancel::a_forgotten_shield_keeps_at_most_its_own_unit_alive
)

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=(lib "${FILES[@]}")
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOG_DIR=${LOG_DIR:-$CARGO_TARGET_DIR/miri-logs}
mkdir -p "$LOG_DIR"
start_all=$(date +%s)
cargo +nightly miri test -p trellis -p trellis-integration --no-run -q 2>&1 | grep -v '^ *Executable' || true

run_one() {
    local name=$1 start status=0 skips=()
    start=$(date +%s)
    for s in "${SLOW[@]}"; do skips+=(--skip "$s"); done
    for l in "${LEAKY[@]}"; do
        [ "${l%%::*}" = "$name" ] && skips+=(--skip "${l#*::}")
    done
    if [ "$name" = lib ]; then
        cargo +nightly miri test -p trellis --lib -- "${skips[@]}" >"$LOG_DIR/$name.log" 2>&1 || status=$?
    else
        cargo +nightly miri test -p trellis-integration --test "$name" -- "${skips[@]}" \
            >"$LOG_DIR/$name.log" 2>&1 || status=$?
    fi
    local summary
    summary=$(grep -o 'test result: .*; [0-9]* filtered out' "$LOG_DIR/$name.log" | tail -1 || true)
    printf '%-14s %4ss  %s  (exit %s)\n' "$name" "$(( $(date +%s) - start ))" "${summary:-no test summary}" "$status"
    return "$status"
}
export -f run_one
export LOG_DIR
export SLOW_LIST="${SLOW[*]}" LEAKY_LIST="${LEAKY[*]}"

failed=0
# xargs runs the files in parallel; each prints its own line.
printf '%s\n' "${targets[@]}" | xargs -P "${JOBS:-2}" -I{} bash -c '
    SLOW=($SLOW_LIST); LEAKY=($LEAKY_LIST); run_one "$1"' _ {} || failed=1

for l in "${LEAKY[@]}"; do
    file=${l%%::*} test=${l#*::}
    [[ " ${targets[*]} " == *" $file "* ]] || continue
    start=$(date +%s)
    status=0
    MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-ignore-leaks" cargo +nightly miri test -p trellis-integration \
        --test "$file" -- --exact "$test" >"$LOG_DIR/leaky-$test.log" 2>&1 || status=$?
    printf '%-14s %4ss  %s, leak check off  (exit %s)\n' "$file (leaky)" "$(( $(date +%s) - start ))" \
        "$(grep -o 'test result: [a-z]*\. [0-9]* passed; [0-9]* failed' "$LOG_DIR/leaky-$test.log" | tail -1)" "$status"
    [ "$status" -eq 0 ] || failed=1
done

echo "miri.sh: ${#targets[@]} targets, $(( $(date +%s) - start_all ))s, $([ $failed -eq 0 ] && echo passed || echo FAILED) (logs: $LOG_DIR)"
exit $failed
