// Smuggling the handle out through shared state declared outside the nursery fails:
// the cell's type is fixed outside, where the brand cannot be named.
use std::cell::RefCell;

fn main() {
    trellis::run(async {
        let smuggled = RefCell::new(None);
        trellis::nursery(async |n| {
            *smuggled.borrow_mut() = Some(n);
        })
        .await
        .unwrap();
        if let Some(n) = smuggled.borrow_mut().take() {
            n.spawn(async {});
        }
    });
}
