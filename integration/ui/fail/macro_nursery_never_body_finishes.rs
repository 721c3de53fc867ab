// The body of a `-> !` nursery fn is checked as `!`: one that can finish is a type error,
// not an unreachable panic at run time.
use trellis::{Nursery, nursery};

#[nursery]
async fn stops(n: Nursery, stop: bool) -> ! {
    loop {
        let _child = n.spawn(async {});
        if stop {
            break;
        }
        trellis::yield_now().await;
    }
}

// `sleep_forever()` returns `()`, so it cannot be the tail of a `-> !` body.
#[nursery]
async fn waits(n: Nursery) -> ! {
    let _child = n.spawn(async {});
    trellis::sleep_forever().await
}

fn main() {
    let _ = stops(true);
    let _ = waits();
}
