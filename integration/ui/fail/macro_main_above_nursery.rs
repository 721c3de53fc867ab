// Attributes expand from the top: `#[nursery]` must come first to take the handle out.
use trellis::Nursery;

#[trellis::main]
#[trellis::nursery]
async fn main(n: Nursery) {
    n.start_soon(async {});
}
