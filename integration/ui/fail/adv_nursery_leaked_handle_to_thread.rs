// `Box::leak` does not make the handle `Send`: the guide's E0277 "`Rc<...Shared...>`
// cannot be sent between threads safely".
use trellis::{Nursery, nursery};

#[nursery]
async fn leak(n: Nursery) {
    let leaked = Box::leak(Box::new(n));
    std::thread::spawn(move || drop(leaked));
}

fn main() {}
