#!/bin/sh
# Runs the benchmark suite once built with fat LTO and panic=abort, for comparison with the
# default build (the workspace's release profile: thin-local LTO, panic=unwind) and with
# figures published for other runtimes, which are often built that way.
#
# The workspace's Cargo.toml is not changed: Cargo's profile environment variables override
# the release profile, and the build goes to a target directory of its own
# (<target>/lto-abort), so the default build is not clobbered. The harness prints the
# profile it was built with on its first line ("lto fat (from CARGO_PROFILE_RELEASE_LTO)",
# "panic=abort").
#
#   bench/lto-abort.sh                     # the full suite
#   bench/lto-abort.sh --rounds 3 spawn    # any harness arguments
set -eu
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/lto-abort"
CARGO_PROFILE_RELEASE_LTO=fat \
CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_TARGET_DIR="$target" \
    exec cargo run --release -p trellis-bench -- "$@"
