// A method's `self` outlives the body: storing the handle in a field lets it escape.
use std::fmt::Debug;

use trellis::{Nursery, nursery};

struct Server<'a> {
    last: Option<Box<dyn Debug + 'a>>,
}

impl Server<'_> {
    #[nursery]
    async fn run(&mut self, n: Nursery) {
        self.last = Some(Box::new(n));
    }
}

fn main() {}
