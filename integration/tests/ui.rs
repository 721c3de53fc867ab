//! Compile-time guarantees, checked with trybuild: `integration/ui/pass/*.rs` must compile
//! (and run without output) and `integration/ui/fail/*.rs` must fail with the checked-in
//! `.stderr`.
//!
//! Refresh the snapshots after an intended change with
//! `TRYBUILD=overwrite cargo test -p trellis-integration --test ui`, then review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
