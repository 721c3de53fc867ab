// A child may not capture the handle (it would be stored inside the nursery it refers to);
// a child that spawns siblings uses `spawn_with`.
fn main() {
    trellis::run(async {
        trellis::nursery(async |n| {
            let n = &n;
            n.spawn(async move {
                n.spawn(async {});
            });
        })
        .await
        .unwrap();
    });
}
