// A nursery and its children live on the runtime's thread; the handle cannot be sent away.
fn main() {
    trellis::run(async {
        trellis::nursery(async |n| {
            std::thread::spawn(move || drop(n));
        })
        .await
        .unwrap();
    });
}
