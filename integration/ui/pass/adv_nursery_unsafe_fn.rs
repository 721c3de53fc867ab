//! `#[nursery]` on an `async unsafe fn`: the body (now inside the nursery closure) keeps
//! its `unsafe` blocks, and callers still need `unsafe` to call it.

#![deny(warnings)]
use trellis::{Nursery, nursery};

/// # Safety
/// `p` must be valid.
#[nursery]
async unsafe fn read(n: Nursery, p: *const u8) -> u8 {
    n.start_soon(async {});
    unsafe { *p }
}

fn main() {
    let x = 7u8;
    trellis::run(async { assert_eq!(unsafe { read(&x) }.await, 7) });
}
