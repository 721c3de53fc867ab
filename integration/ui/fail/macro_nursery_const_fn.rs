// A nursery runs children on a runtime: it cannot be a `const fn`.
use trellis::Nursery;

#[trellis::nursery]
const fn f(n: Nursery) {
    n.start_soon(async {});
}

fn main() {}
