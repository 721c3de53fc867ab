// A child whose only return is `Err(..)` names the error type but not its value type
// (what its `JoinHandle` yields): annotate it, `Err::<(), _>(..)`.
#[derive(Debug)]
struct Lost;

fn main() {
    trellis::run(async {
        let _ = trellis::nursery(async |n| {
            n.spawn(async { Err(Lost) });
            Ok(())
        })
        .await;
    });
}
