use trellis::{Nursery, nursery};

trait Server {
    #[nursery]
    async fn serve(&self, n: Nursery);
}

fn main() {}
