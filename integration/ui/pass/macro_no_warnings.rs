//! Every macro form under `deny(warnings)` and clippy's default lints: an expansion that
//! warns (unused items, needless returns, elided lifetimes...) fails this case. Run clippy on
//! `integration/tests/macros.rs` for the clippy half; rustc's lints are checked here.

#![deny(warnings, rust_2018_idioms, missing_docs, unused_qualifications)]
#![deny(clippy::all)]

use trellis::{Nursery, nursery, open_nursery};

/// A nursery fn returning unit.
#[nursery]
pub async fn unit(n: Nursery) {
    let _child = n.spawn(async {});
}

/// A nursery fn returning a result.
#[nursery]
pub async fn result(n: Nursery, text: &str) -> Result<u32, std::num::ParseIntError> {
    let _child = n.spawn(async {});
    text.parse()
}

/// A nursery fn returning a value.
#[nursery]
pub async fn value(n: Nursery) -> u8 {
    let _child = n.spawn(async {});
    1
}

/// A nursery fn returning an option.
#[nursery(handle)]
pub async fn option() -> Option<u8> {
    let _child = handle.spawn(async {});
    None
}

/// A type with a nursery method.
#[derive(Debug)]
pub struct Service;

impl Service {
    /// A nursery method.
    #[nursery]
    pub async fn run(&self, n: Nursery) -> Result<(), String> {
        let _child = n.spawn(async { Ok::<(), String>(()) });
        Ok(())
    }
}

#[trellis::main(autojump)]
async fn main() -> Result<(), String> {
    unit().await;
    let _ = result("1").await;
    let _ = value().await;
    let _ = option().await;
    Service.run().await?;
    let _ = open_nursery! { |n| let _child = n.spawn(async {}); };
    Ok(())
}
