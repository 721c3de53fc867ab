// The nursery handle cannot leave the body: its brand is chosen by the nursery.
fn main() {
    trellis::run(async {
        let _escaped = trellis::nursery(async |n| Ok::<_, ()>(n)).await;
    });
}
