// `map_err` maps the children's errors; a nursery returning `()` or a plain value has none.
use trellis::{ErrorGroup, Nursery, nursery};

fn first(group: ErrorGroup<String>) -> String {
    group.into_first()
}

#[nursery(map_err = first)]
async fn unit(n: Nursery) {
    n.start_soon(async {});
}

#[nursery(map_err = first)]
async fn value(n: Nursery) -> u32 {
    n.start_soon(async {});
    1
}

fn main() {}
