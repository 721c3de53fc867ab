//! `#[trellis::test]` in its forms (they compile to `#[test]` fns, so outside `cargo test`
//! only the attribute's parsing is exercised here; `integration/tests/macros.rs` runs them).

#[trellis::test]
async fn real_clock() {}

#[trellis::test(mock_clock)]
async fn mock_clock() {
    trellis::advance(std::time::Duration::from_secs(1));
}

#[trellis::test(autojump)]
async fn autojump() -> Result<(), String> {
    trellis::sleep(std::time::Duration::from_secs(86_400)).await;
    Ok(())
}

#[trellis::test(crate = trellis, autojump)]
async fn with_crate() {}

fn main() {}
