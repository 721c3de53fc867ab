// Children may borrow what outlives the `nursery(..)` call, not locals of the body: the
// body may finish before its children.
fn main() {
    trellis::run(async {
        trellis::nursery(async |n| {
            let local = String::from("dies with the body");
            n.spawn(async {
                println!("{}", local);
            });
        })
        .await
        .unwrap();
    });
}
