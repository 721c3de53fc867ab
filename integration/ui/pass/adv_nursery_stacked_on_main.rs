//! `#[nursery]` above `#[trellis::main]`: `main` itself is the nursery (the handle is removed
//! before `#[trellis::main]` sees the signature), on the autojump clock.

#![deny(warnings)]

use std::time::Duration;

use trellis::{Nursery, nursery};

#[nursery]
#[trellis::main(autojump)]
async fn main(n: Nursery) {
    let start = trellis::now();
    n.start_soon(async move {
        trellis::sleep(Duration::from_secs(3600)).await;
        assert!(trellis::now() - start >= Duration::from_secs(3600));
    });
}
