// Nothing names the nursery's error type: the body returns a bare `Ok(())` and the child
// a bare `Ok(1)`. Name it in the body: `Ok::<_, MyError>(())`.
fn main() {
    trellis::run(async {
        let _ = trellis::nursery(async |n| {
            n.spawn(async { Ok(1) });
            Ok(())
        })
        .await;
    });
}
