// Storing the handle in a variable of the enclosing function would let it outlive the
// nursery.
fn main() {
    trellis::run(async {
        let mut stash = None;
        trellis::nursery(async |n| {
            stash = Some(n);
        })
        .await
        .unwrap();
        drop(stash);
    });
}
