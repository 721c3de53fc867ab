// `spawn_with` gives the child its own handle; capturing the outer one is still an escape.
fn main() {
    trellis::run(async {
        trellis::nursery(async |n| {
            let outer = &n;
            n.spawn_with(async move |_inner| {
                outer.spawn(async {});
            });
        })
        .await
        .unwrap();
    });
}
