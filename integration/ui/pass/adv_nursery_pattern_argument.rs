//! `#[nursery]` with a tuple-pattern argument: the pattern stays in the signature and the
//! children borrow its bindings.

#![deny(warnings)]
use std::cell::Cell;
use trellis::{Nursery, nursery};

#[nursery]
async fn sum(n: Nursery, (a, b): (u8, u8), out: &Cell<u8>) -> u8 {
    n.start_soon(async move { out.set(a + b) });
    a * b
}

fn main() {
    let out = Cell::new(0);
    trellis::run(async { assert_eq!(sum((2, 3), &out).await, 6) });
    assert_eq!(out.get(), 5);
}
