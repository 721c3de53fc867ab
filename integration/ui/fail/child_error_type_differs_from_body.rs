// The body's return type fixes the nursery's error type; a child failing with another
// type is reported with a note on how to fix it.
fn main() {
    trellis::run(async {
        let _ = trellis::nursery(async |n| {
            n.spawn(async { Err::<(), _>(std::fmt::Error) });
        })
        .await;
    });
}
