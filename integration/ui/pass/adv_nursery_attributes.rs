//! `#[nursery]` next to other attributes (`#[inline]`, `#[must_use]`, doc comments, `#[doc]`,
//! `#[cfg_attr]`, before and after it) and attributes on the parameters, handle included.

#![deny(warnings)]
use trellis::{Nursery, nursery};

/// Doc comment.
#[inline]
#[must_use]
#[nursery]
#[allow(clippy::needless_return)]
pub async fn f(n: Nursery, x: u8) -> u8 {
    n.start_soon(async {});
    return x;
}

#[nursery]
#[doc = "after"]
#[cfg_attr(any(), inline)]
async fn g(#[allow(unused_mut)] mut n: Nursery, #[allow(unused)] y: u8) {
    n.start_soon(async {});
    let _ = &mut n;
}

fn main() { trellis::run(async { assert_eq!(f(4).await, 4); g(1).await; }); }
