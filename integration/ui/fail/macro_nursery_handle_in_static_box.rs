// `Box<dyn Trait>` in a `let` is `'static`, and the handle is not.
use trellis::{Nursery, nursery};

#[nursery]
async fn boxed(n: Nursery) {
    let erased: Box<dyn std::fmt::Debug> = Box::new(n);
    drop(erased);
}

fn main() {}
