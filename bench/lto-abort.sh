#!/bin/sh
# Runs the benchmark suite with two builds side by side: the default build (the
# workspace's release profile: opt-level 3, thin-local LTO, panic=unwind) and one built with
# fat LTO and panic=abort, the way figures published for other runtimes are often built.
# Every child of the second build runs back to back with the same child of the first, so
# load that drifts during the run hits both alike; the harness prints both tables and the
# headline figures side by side (`--compare`).
#
# The workspace's Cargo.toml is not changed: Cargo's profile environment variables override
# the release profile for the second build, which goes to a target directory of its own
# (<target>/lto-abort), so the default build is not clobbered. Each table says how its
# binaries were built ("lto fat (from CARGO_PROFILE_RELEASE_LTO)", "panic=abort").
#
#   bench/lto-abort.sh                     # the full suite, both builds (about 13 minutes)
#   bench/lto-abort.sh --rounds 3 spawn    # any harness arguments
#
# The fat-LTO build alone, without the comparison:
#   CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_PANIC=abort \
#     CARGO_TARGET_DIR=target/lto-abort cargo run --release -p trellis-bench
set -eu
cd "$(dirname "$0")/.."
base="${CARGO_TARGET_DIR:-target}"
CARGO_PROFILE_RELEASE_LTO=fat \
CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_TARGET_DIR="$base/lto-abort" \
    cargo build --release -p trellis-bench --bins
exec cargo run --release -p trellis-bench -- \
    --compare "$base/lto-abort/release/trellis-bench" "$@"
