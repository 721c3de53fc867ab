//! Adversarial pass 2, fixed: code that compiles and that `#[nursery]` rejected or
//! miscompiled.
//!
//! - a user's unit struct named `__trellis_output` (the expansion's `let` of that name
//!   resolved to it) and a user's trait with `kind` / `body` / `output` methods for every
//!   type (its `kind` hijacked the probe that tells a `Result` alias from a plain value);
//! - `Box<dyn Holder<'_>>` of a trait bounding itself by its lifetime: not a `'static` box;
//! - `mod std` / `mod tokio` / `mod trellis` declared in the body: their `thread::spawn`,
//!   `spawn` and `nursery` are the body's own, not std's, tokio's or trellis's;
//! - a `#[cfg]` parameter before the handle, `Nursery<'_, '_>` without an error type, and a
//!   named second lifetime (what children may borrow).

#![deny(warnings)]
#![allow(non_camel_case_types, dead_code)]

use std::cell::Cell;

use trellis::{Nursery, nursery};

struct __trellis_output;
struct OutputProbe;
struct ResultKind;
struct ValueKind;
struct FirstError;

trait Kind {
    fn kind(&self) -> u8 {
        0
    }
}
impl<T> Kind for T {}

trait BodyAndOutput {
    fn body(&self) -> u8 {
        1
    }
    fn output(&self) -> u8 {
        2
    }
}
impl<T> BodyAndOutput for T {}

#[nursery]
async fn plain(n: Nursery, ran: &Cell<u32>) -> u32 {
    n.start_soon(async { ran.set(ran.get() + 1) });
    3
}

type Res<T> = Result<T, String>;

#[nursery]
async fn alias(n: Nursery) -> Res<u32> {
    n.spawn(async { Err::<(), _>("child".to_string()) });
    Ok(3)
}

trait Holder<'a>: 'a {}
impl<'a, T: 'a> Holder<'a> for T {}

#[nursery]
async fn boxed(n: Nursery) -> u32 {
    let held: Box<dyn Holder<'_>> = Box::new(n);
    drop(held);
    let held = Box::new(Cell::new(1u32)) as Box<dyn Holder<'_>>;
    drop(held);
    1
}

#[nursery]
async fn own_std(n: Nursery, ran: &Cell<u32>) {
    mod std {
        pub mod thread {
            pub fn spawn<T>(f: impl FnOnce() -> T) -> T {
                f()
            }
        }
    }
    std::thread::spawn(|| n.start_soon(async { ran.set(ran.get() + 1) }));
}

#[nursery]
async fn own_tokio(n: Nursery, ran: &Cell<u32>) {
    mod tokio {
        pub fn spawn<T>(f: impl FnOnce() -> T) -> T {
            f()
        }
    }
    tokio::spawn(|| n.start_soon(async { ran.set(ran.get() + 1) }));
}

#[nursery]
async fn own_trellis(n: Nursery) -> u32 {
    mod trellis {
        pub fn nursery(f: impl FnOnce(u32) -> u32) -> u32 {
            f(5)
        }
    }
    n.start_soon(async {});
    trellis::nursery(|m| ::std::thread::spawn(move || m).join().unwrap())
}

#[nursery]
async fn cfg_first(#[cfg(any())] gone: u8, n: Nursery, x: u8) -> u8 {
    n.start_soon(async {});
    x
}

#[nursery]
async fn elided_error(n: Nursery<'_, '_>) -> Result<u8, String> {
    n.spawn(async { Err::<(), String>("e".into()) });
    Ok(1)
}

#[nursery]
async fn named_env<'a>(n: Nursery<'_, 'a>, data: &'a [u8]) -> usize {
    n.start_soon(async { assert_eq!(data.len(), 2) });
    data.len()
}

fn main() {
    assert_eq!((1u8.kind(), 1u8.body(), 1u8.output()), (0, 1, 2));
    let ran = Cell::new(0);
    ::trellis::run(async {
        assert_eq!(plain(&ran).await, 3);
        assert_eq!(alias().await, Err("child".to_string()));
        assert_eq!(boxed().await, 1);
        own_std(&ran).await;
        own_tokio(&ran).await;
        assert_eq!(own_trellis().await, 5);
        assert_eq!(cfg_first(4).await, 4);
        assert_eq!(elided_error().await, Err("e".into()));
        assert_eq!(named_env(&[1, 2]).await, 2);
    });
    assert_eq!(ran.get(), 3);
}
