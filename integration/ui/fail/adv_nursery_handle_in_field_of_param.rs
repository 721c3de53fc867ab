// Storing the handle in a field of a parameter (not `self`): the macro's own message.
use std::convert::Infallible;

use trellis::{Nursery, nursery};

struct Holder<'s, 'e> {
    handle: Option<Nursery<'s, 'e, Infallible>>,
}

#[nursery]
async fn keep<'s, 'e>(n: Nursery, holder: &mut Holder<'s, 'e>) {
    holder.handle = Some(n);
}

fn main() {}
