// `#[trellis::main]` given a handle without `#[nursery]`: told to put `#[nursery]` above.
use trellis::Nursery;

#[trellis::main]
async fn main(n: Nursery) {
    n.start_soon(async {});
}
