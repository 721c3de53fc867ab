// A body returning `()` makes a nursery that cannot fail: no `Ok(())` anywhere.
fn main() {
    trellis::run(async {
        let result: Result<(), trellis::ErrorGroup<std::convert::Infallible>> =
            trellis::nursery(async |n| {
                n.spawn(async {});
                n.spawn(trellis::yield_now());
            })
            .await;
        assert!(result.is_ok());
    });
}
