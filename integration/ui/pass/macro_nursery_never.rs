//! `-> !` with the macros: a `#[nursery]` fn (free, inherent method, trait-impl method) and
//! an `open_nursery!` body that never return. Their nurseries cannot fail (as with `()`); a
//! scope around the call ends them, or a panic. No warnings either.

#![deny(warnings, rust_2018_idioms, unused_qualifications)]

use std::cell::Cell;
use std::convert::Infallible;
use std::time::Duration;

use trellis::{ErrorGroup, Nursery, nursery, open_nursery};

#[nursery]
async fn worker(n: Nursery, ticks: &Cell<u32>) -> ! {
    let _child = n.spawn(async {
        loop {
            trellis::sleep(Duration::from_secs(1)).await;
            ticks.set(ticks.get() + 1);
        }
    });
    // (`sleep_forever()` returns `()`: as the tail of a `-> !` body it is a type error.)
    loop {
        trellis::sleep_forever().await;
    }
}

#[nursery]
async fn gives_up(n: Nursery) -> ! {
    let _child = n.spawn(async {});
    trellis::yield_now().await;
    panic!("gave up")
}

struct Server {
    served: Cell<u32>,
}

impl Server {
    #[nursery]
    async fn serve(&self, n: Nursery) -> ! {
        loop {
            let _child = n.spawn(async { self.served.set(self.served.get() + 1) });
            trellis::sleep(Duration::from_secs(1)).await;
        }
    }
}

trait Service {
    async fn run(&self) -> !;
}

impl Service for Server {
    #[nursery(crate = trellis)]
    async fn run(&self, n: Nursery) -> ! {
        loop {
            let _child = n.spawn(async { self.served.set(self.served.get() + 1) });
            trellis::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn main() {
    let ticks = Cell::new(0);
    let server = Server {
        served: Cell::new(0),
    };
    trellis::Builder::new().autojump().run(async {
        // The call's type is `!`: as an `Option<!>`, `move_on_after` can only give `None`.
        let out = trellis::move_on_after(Duration::from_millis(3500), worker(&ticks)).await;
        assert!(out.is_none());

        assert!(
            trellis::move_on_after(Duration::from_millis(1500), server.serve())
                .await
                .is_none()
        );
        assert!(
            trellis::move_on_after(Duration::from_millis(1500), server.run())
                .await
                .is_none()
        );

        // `open_nursery!` with `-> !` is the nursery's result, as for `()`.
        let block: Option<Result<(), ErrorGroup<Infallible>>> =
            trellis::move_on_after(Duration::from_secs(2), async {
                open_nursery! { |n| -> !
                    loop {
                        let _child = n.spawn(async {});
                        trellis::sleep(Duration::from_secs(1)).await;
                    }
                }
            })
            .await;
        assert!(block.is_none());
    });
    assert_eq!(ticks.get(), 3);
    assert_eq!(server.served.get(), 4);

    std::panic::set_hook(Box::new(|_| {}));
    assert!(std::panic::catch_unwind(|| trellis::run(gives_up())).is_err());
}
