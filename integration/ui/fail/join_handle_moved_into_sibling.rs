// A JoinHandle is awaited in the body that spawned the child; siblings communicate through
// channels, since a child cannot hold anything branded by the nursery.
fn main() {
    trellis::run(async {
        trellis::nursery(async |n| {
            let first = n.spawn(async {});
            n.spawn(async move {
                let _ = first.await;
            });
        })
        .await
        .unwrap();
    });
}
