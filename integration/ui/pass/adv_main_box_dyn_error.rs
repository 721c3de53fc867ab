//! `#[trellis::main]` returning `Result<(), Box<dyn Error>>` with `?` converting into it.

#![deny(warnings)]
#[trellis::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let x: u32 = "42".parse()?;
    assert_eq!(x, 42);
    Ok(())
}
