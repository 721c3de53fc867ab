// Children borrow data owned by the caller of `nursery`; `spawn_with` children spawn
// siblings; handles are awaited in the body; error types are inferred.
use std::cell::Cell;

#[derive(Debug)]
struct AppError;

async fn work(total: &Cell<u32>) -> Result<u32, AppError> {
    total.set(total.get() + 1);
    Ok(total.get())
}

fn main() {
    let total = Cell::new(0);
    let names = vec!["a".to_string(), "b".to_string()];
    let out = trellis::run(async {
        trellis::nursery(async |n| {
            for name in &names {
                let total = &total;
                n.spawn(async move {
                    let _ = name.len();
                    work(total).await.map(drop)
                });
            }
            n.spawn_with(async |n| {
                n.spawn(async { total.set(total.get() + 10) });
            });
            let h = n.spawn(async { Ok(5) });
            let five = h.await.map_err(|_| AppError)?;
            Ok(five)
        })
        .await
    });
    assert_eq!(out.unwrap(), 5);
}
