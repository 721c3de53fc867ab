// Where the nursery's error type is inferred: whenever something names it by equality (the
// body's typed `Ok`/`Err` or tail call, the closure's return type, a child's typed `Err` or
// tail call, the handle's type, a turbofish, the type of the result), the children's bare
// `Ok(..)` need no annotation. `ui/fail/error_type_*` are the shapes that cannot infer.
use std::io;

use trellis::{ErrorGroup, Nursery, nursery};

#[derive(Debug, PartialEq)]
struct MyErr;

fn io_op() -> io::Result<()> {
    Ok(())
}

async fn my_op() -> Result<(), MyErr> {
    Ok(())
}

async fn shapes() {
    // The body's `Ok` names the error type; the child's `Ok(1)` follows.
    let _ = nursery(async |n| {
        n.spawn(async { Ok(1) });
        Ok::<_, MyErr>(())
    })
    .await;

    // A child's value used (a method call) before the body names the error type.
    let _ = nursery(async |n| {
        let len = n.spawn(async { Ok(vec![1]) }).await.unwrap().len();
        Ok::<_, MyErr>(len)
    })
    .await;

    // The body's tail is a typed call, or it returns a typed `Err` early.
    let _ = nursery(async |n| {
        n.spawn(async { Ok(1) });
        my_op().await
    })
    .await;
    let _ = nursery(async |n| {
        n.spawn(async { Ok(1) });
        if std::env::args().count() > 99 {
            return Err(MyErr);
        }
        Ok(())
    })
    .await;

    // The closure's return type names it, so the body's `?` converts into it.
    let _ = nursery(async |n| -> io::Result<()> {
        n.spawn(async { Ok(1) });
        io_op()?;
        Ok(())
    })
    .await;

    // A child names it: a typed `Err`, or a typed tail after its own `?`.
    let _ = nursery(async |n| {
        n.spawn(async { Ok(1) });
        n.spawn(async { Err::<(), _>(MyErr) });
        Ok(())
    })
    .await;
    let _ = nursery(async |n| {
        n.spawn(async {
            io_op()?;
            io_op()
        });
        Ok(())
    })
    .await;

    // The handle's type, a turbofish, or the type of the result names it.
    let _ = nursery(async |n: Nursery<'_, '_, MyErr>| {
        n.spawn(async { Ok(1) });
        Ok(())
    })
    .await;
    let _ = nursery::<_, _, MyErr>(async |n| {
        n.spawn(async { Ok(1) });
        Ok(())
    })
    .await;
    let _: Result<_, ErrorGroup<MyErr>> = nursery(async |n| {
        n.spawn(async { Ok(1) });
        Ok(())
    })
    .await;

    // `spawn_with` and `start` children share the body's error type.
    let _ = nursery(async |n| {
        n.spawn_with(async |n| {
            my_op().await?;
            n.spawn(async { Ok(1) });
            Ok(())
        });
        let port = n
            .start(async |_n, status| {
                status.started(8080_u16);
                Ok(())
            })
            .await
            .unwrap();
        Ok::<_, MyErr>(port)
    })
    .await;

    // A body returning `()`, or never returning: the error type is `Infallible`.
    let _ = nursery(async |n| {
        n.spawn(async { Ok(1) });
    })
    .await;
    let _ = trellis::move_on_after(std::time::Duration::ZERO, nursery(async |n| {
        n.spawn(async { Ok(1) });
        loop {
            trellis::yield_now().await;
        }
    }))
    .await;
}

// `map_err(into_first)?` into a function's own error type (which converts from nothing
// else) names it too.
async fn own_error() -> Result<(), MyErr> {
    nursery(async |n| {
        n.spawn(async { Ok(1) });
        Ok(())
    })
    .await
    .map_err(ErrorGroup::into_first)?;
    Ok(())
}

// `anyhow::Ok` names `anyhow::Error`; then the body's `?` and the call's `?` both convert.
async fn with_anyhow() -> anyhow::Result<()> {
    nursery(async |n| {
        n.spawn(async { Ok(1) });
        io_op()?;
        anyhow::Ok(())
    })
    .await?;
    Ok(())
}

fn main() {
    trellis::run(async {
        shapes().await;
        own_error().await.unwrap();
        with_anyhow().await.unwrap();
    });
}
