use trellis::{Nursery, nursery};

#[nursery]
async fn grandchildren(n: Nursery) {
    let _child = n.spawn(async {
        let _grandchild = n.spawn(async {});
    });
}

fn main() {}
