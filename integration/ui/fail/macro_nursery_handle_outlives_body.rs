use trellis::{Nursery, nursery};

#[nursery]
async fn keep(n: Nursery, out: &mut Vec<Nursery<'_, '_, std::convert::Infallible>>) {
    out.push(n);
}

fn main() {}
