// A child's value is wrapped in `Ok(..)` when the nursery can fail: a plain value is
// reported with the fix, not with advice about the body (which is right already).
fn main() {
    trellis::run(async {
        let _ = trellis::nursery(async |n| {
            n.spawn(async { 7_u32 });
            Ok::<_, String>(())
        })
        .await;
    });
}
