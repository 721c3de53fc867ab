//! `#[trellis::test]` with `#[should_panic(expected = ..)]`, and with `shuffle` + a clock
//! returning `Result<(), Box<dyn Error>>` (outside `cargo test` only the parsing runs).

#![deny(warnings)]
#[trellis::test(autojump)]
#[should_panic(expected = "boom")]
async fn t() { trellis::sleep(std::time::Duration::from_secs(1)).await; panic!("boom") }
#[trellis::test(shuffle, mock_clock)]
async fn r() -> Result<(), Box<dyn std::error::Error>> { let _: u8 = "1".parse()?; Ok(()) }
fn main() {}
