// A closure that captures the handle, stored in a variable of the caller: the handle escapes
// with it.
use trellis::{Nursery, nursery};

#[nursery]
async fn register<'a>(n: Nursery, callback: &mut Option<Box<dyn FnOnce() + 'a>>) {
    *callback = Some(Box::new(move || n.start_soon(async {})));
}

fn main() {}
