// A `start` child gets its own handle (the closure's first parameter); the outer one escapes.
use trellis::{Nursery, nursery};

#[nursery]
async fn server(n: Nursery) -> Result<(), String> {
    let port = n
        .start(async |_own, status| {
            status.started(8080_u16);
            n.start_soon(async {});
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
    let _ = port;
    Ok(())
}

fn main() {}
