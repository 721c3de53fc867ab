// A JoinHandle carries the nursery's brand and cannot be returned from the body.
fn main() {
    trellis::run(async {
        let _handle = trellis::nursery(async |n| {
            let h = n.spawn(async { Ok::<_, ()>(1) });
            Ok::<_, ()>(h)
        })
        .await;
    });
}
