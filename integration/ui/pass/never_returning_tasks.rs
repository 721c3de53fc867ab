// Tasks whose code never finishes have output type `!` (edition 2024): a worker `loop`,
// a body that waits forever or ends in `panic!`. Children, `spawn_with` and `start`
// children, and bodies accept them; a body that never returns makes a nursery that cannot
// fail, unless its return type names an error.
use std::time::Duration;

#[derive(Debug)]
struct Lost;

fn main() {
    trellis::Builder::new().autojump().run(async {
        // The shape of the issue: a worker loop, and a body that waits for cancellation.
        let _ = trellis::cancel_scope(async |scope| {
            trellis::nursery(async |n| {
                n.spawn(async {
                    loop {
                        trellis::sleep(Duration::from_secs(1)).await;
                    }
                });
                n.start_soon(async {
                    loop {
                        trellis::yield_now().await;
                    }
                });
                scope.cancel();
                trellis::sleep_forever().await
            })
            .await
        })
        .await;

        // `spawn_with` and `start` children that never return, a handle that yields `!`.
        let _: Option<Result<_, trellis::ErrorGroup<std::convert::Infallible>>> =
            trellis::cancel_scope(async |scope| {
            trellis::nursery(async |n| {
                n.spawn_with(async |n| {
                    loop {
                        n.spawn(async {});
                        trellis::sleep(Duration::from_secs(1)).await;
                    }
                });
                let _ = n
                    .start(async |_n, status| {
                        status.started(8080_u16);
                        loop {
                            trellis::sleep(Duration::from_secs(1)).await;
                        }
                    })
                    .await;
                let forever = n.spawn(async {
                    loop {
                        trellis::yield_now().await;
                    }
                });
                forever.cancel();
                let Err(_) = forever.await;
                scope.cancel();
                loop {
                    trellis::yield_now().await;
                }
            })
            .await
            })
            .await;

        // A body that never returns, whose children fail with an error it names.
        let failed: Result<_, trellis::ErrorGroup<Lost>> =
            trellis::nursery(async |n| -> Result<(), Lost> {
                n.spawn(async { Err::<(), _>(Lost) });
                loop {
                    trellis::sleep(Duration::from_secs(1)).await;
                }
            })
            .await;
        assert!(failed.is_err());
    });

    // A body that ends in `panic!` (the panic resumes from the nursery).
    std::panic::set_hook(Box::new(|_| {}));
    let gave_up = std::panic::catch_unwind(|| {
        trellis::run(trellis::nursery(async |n| {
            n.spawn(async {
                loop {
                    trellis::yield_now().await;
                }
            });
            panic!("gave up")
        }))
    });
    assert!(gave_up.is_err());
}
