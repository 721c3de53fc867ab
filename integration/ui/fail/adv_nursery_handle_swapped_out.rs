// `std::mem::swap` into a parameter: not recognised by the macro; the guide's "lifetime may
// not live long enough".
use std::convert::Infallible;

use trellis::{Nursery, nursery};

#[nursery]
async fn swap_out<'s, 'e>(n: Nursery, slot: &mut Option<Nursery<'s, 'e, Infallible>>) {
    let mut mine = Some(n);
    std::mem::swap(slot, &mut mine);
}

fn main() {}
