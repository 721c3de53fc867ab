//! Compile-time guarantees, checked with trybuild: `ui-tests/pass/*.rs` must compile and
//! `ui-tests/fail/*.rs` must fail with the checked-in `.stderr`.
//!
//! Refresh the snapshots after an intended change with
//! `TRYBUILD=overwrite cargo test --test ui`, then review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui-tests/pass/*.rs");
    t.compile_fail("ui-tests/fail/*.rs");
}
