// A closure that captures the handle, boxed and stored through a parameter: a shape the
// macro does not recognise; the borrow checker's "lifetime may not live long enough"
// (the guide's entry of that name).
use trellis::{Nursery, nursery};

#[nursery]
async fn later(n: Nursery, out: &mut Option<Box<dyn FnOnce() + '_>>) {
    let spawn_later = move || n.start_soon(async {});
    *out = Some(Box::new(spawn_later));
}

fn main() {}
