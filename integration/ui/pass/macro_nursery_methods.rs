//! `#[nursery]` on inherent methods and trait-impl methods; children borrow `self`.

use std::cell::Cell;

use trellis::{Nursery, nursery};

struct Server {
    served: Cell<u32>,
}

impl Server {
    #[nursery]
    async fn serve(&self, n: Nursery, clients: u32) -> u32 {
        for _ in 0..clients {
            let _child = n.spawn(async { self.served.set(self.served.get() + 1) });
        }
        clients
    }

    #[nursery]
    pub async fn serve_owned(self, n: Nursery) -> Result<u32, String> {
        let _child = n.spawn(async { self.served.set(1) });
        Ok(0)
    }
}

trait Service {
    async fn call(&self, request: &str) -> Result<usize, String>;
}

impl Service for Server {
    #[nursery]
    async fn call(&self, n: Nursery, request: &str) -> Result<usize, String> {
        let _child = n.spawn(async { self.served.set(request.len() as u32) });
        Ok(request.len())
    }
}

fn main() {
    trellis::run(async {
        let server = Server {
            served: Cell::new(0),
        };
        let _ = server.serve(3).await;
        let _ = server.call("hello").await;
        let _ = server.serve_owned().await;
    });
}
