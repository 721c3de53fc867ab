use std::cell::RefCell;
use std::convert::Infallible;

use trellis::{Nursery, nursery};

#[nursery]
async fn stash(n: Nursery, slot: &RefCell<Option<Nursery<'static, 'static, Infallible>>>) {
    *slot.borrow_mut() = Some(n);
}

fn main() {}
