//! `#[trellis::main]` returning `!` (the runtime's output type is named without `!` as a type
//! argument, which stable Rust rejects): the program ends with `std::process::exit`.

#![deny(warnings)]

use std::time::Duration;

use trellis::{Nursery, nursery};

#[nursery]
async fn ticker(n: Nursery) -> ! {
    let _child = n.spawn(async {});
    loop {
        trellis::sleep(Duration::from_secs(1)).await;
    }
}

#[trellis::main(autojump)]
async fn main() -> ! {
    let _ = trellis::move_on_after(Duration::from_secs(5), ticker()).await;
    std::process::exit(0)
}
