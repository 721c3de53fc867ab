// The handle inside a `Vec` inside a `'static` box in a parameter: not recognised by the
// macro; the lifetime error the guide describes for `'static` boxes.
use std::any::Any;
use std::cell::RefCell;

use trellis::{Nursery, nursery};

#[nursery]
async fn collect(n: Nursery, stash: &RefCell<Vec<Box<dyn Any>>>) {
    let handles = vec![n];
    stash.borrow_mut().push(Box::new(handles));
}

fn main() {}
