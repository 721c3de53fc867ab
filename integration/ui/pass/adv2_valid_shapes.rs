//! Adversarial pass 2: valid `#[nursery]` shapes that already worked, each asserting what it
//! returned, so that a regression shows.
//!
//! Return types: `Self`, `Result<Self, _>`, `Self::Output` and `<Self as Trait>::Output` in a
//! trait impl, `Result<_, Self::E>`, a generic `T` with a where clause, `Result<T, E>` with
//! generic `E`, `impl Trait` (argument and return), a tuple, `Option` with `?`,
//! `Box<dyn Error>` / `io::Result` / `anyhow::Result` with `?`, a `Result` alias with a
//! defaulted parameter, lifetimes in `Result<&'a str, _>`, `Result<impl Debug, _>`.
//! Receivers: `self: Pin<&mut Self>`, `self: Box<Self>`, `pub(crate) &self`. Bodies: a
//! labeled block, `async` closures, the handle passed to a helper by reference, a `move`
//! closure copying data, a nested `#[nursery]` fn and a `macro_rules!` in the body, early
//! `return`, `?`, and the handle's name shadowed in every binding form.

#![deny(warnings)]
#![allow(clippy::all)]

use std::cell::Cell;
use std::fmt::Debug;
use std::pin::Pin;

use trellis::{Nursery, nursery};

#[derive(Debug, PartialEq, Default)]
struct S(u32);

trait Make {
    type Output;
    async fn make(&self) -> Self::Output;
    async fn def(&self) -> Self::Output
    where
        Self::Output: Default;
}

impl S {
    #[nursery]
    async fn new_self(n: Nursery, v: u32) -> Self {
        n.start_soon(async {});
        S(v)
    }

    #[nursery]
    async fn res_self(n: Nursery, v: u32) -> Result<Self, String> {
        n.spawn(async { Ok::<(), String>(()) });
        Ok(S(v))
    }

    #[nursery]
    async fn pinned(self: Pin<&mut Self>, n: Nursery) -> u32 {
        n.start_soon(async {});
        self.0
    }

    #[nursery]
    pub(crate) async fn field(&self, n: Nursery) -> &u32 {
        n.start_soon(async { assert_eq!(self.0, 5) });
        &self.0
    }

    #[nursery]
    async fn boxed(self: Box<Self>, n: Nursery) -> u32 {
        n.start_soon(async {});
        self.0
    }
}

impl Make for S {
    type Output = u32;

    #[nursery]
    async fn make(&self, n: Nursery) -> Self::Output {
        n.start_soon(async {});
        self.0 + 1
    }

    #[nursery]
    async fn def(&self, n: Nursery) -> <Self as Make>::Output
    where
        Self::Output: Default,
    {
        n.start_soon(async {});
        Default::default()
    }
}

trait Run {
    type E;
    async fn run(&self) -> Result<u32, Self::E>;
}

struct Runner;

impl Run for Runner {
    type E = String;

    #[nursery]
    async fn run(&self, n: Nursery) -> Result<u32, Self::E> {
        n.spawn(async { Err::<(), String>("e".into()) });
        Ok(1)
    }
}

#[nursery]
async fn generic<T>(n: Nursery, v: T) -> T
where
    T: Clone + Debug,
{
    n.start_soon(async {});
    v.clone()
}

#[nursery]
async fn generic_error<T: Debug, E>(n: Nursery, v: T) -> Result<T, E>
where
    E: Debug,
{
    n.spawn(async { Ok::<(), E>(()) });
    Ok(v)
}

#[nursery]
async fn impl_trait(n: Nursery, v: impl Into<u32>) -> impl Debug {
    n.start_soon(async {});
    v.into()
}

#[nursery]
async fn tuple(n: Nursery) -> (u8, String) {
    n.start_soon(async {});
    (1, "a".into())
}

#[nursery]
async fn option(n: Nursery, x: Option<u8>) -> Option<u8> {
    n.start_soon(async {});
    let v = x?;
    Some(v + 1)
}

#[nursery]
async fn dyn_error(n: Nursery, s: &str) -> Result<u32, Box<dyn std::error::Error>> {
    n.spawn(async { Ok::<(), Box<dyn std::error::Error>>(()) });
    Ok(s.parse::<u32>()?)
}

#[nursery]
async fn io_error(n: Nursery) -> std::io::Result<u8> {
    n.spawn(async { Ok(()) });
    Err(std::io::Error::other("x"))?;
    Ok(1)
}

#[nursery]
async fn anyhow_error(n: Nursery, s: &str) -> anyhow::Result<u32> {
    n.spawn(async { anyhow::Ok(()) });
    Ok(s.parse::<u32>()?)
}

type Res<T, E = String> = Result<T, E>;

#[nursery]
async fn defaulted(n: Nursery) -> Res<u8> {
    n.spawn(async { Err::<(), _>("d".to_string()) });
    Ok(1)
}

#[nursery]
async fn defaulted_given(n: Nursery, s: &str) -> Res<u32, std::num::ParseIntError> {
    n.start_soon(async {});
    Ok(s.parse::<u32>()?)
}

#[nursery]
async fn lifetimes<'a, 'b: 'a>(n: Nursery, a: &'a str, _b: &'b str) -> Result<&'a str, String> {
    n.start_soon(async { assert_eq!(a.len(), 1) });
    Ok(a)
}

#[nursery]
async fn result_impl(n: Nursery) -> Result<impl Debug, String> {
    n.spawn(async { Err::<(), String>("ri".into()) });
    Ok(3)
}

fn helper<'env>(n: &Nursery<'_, 'env, String>, c: &'env Cell<u32>) {
    n.start_soon(async { c.set(c.get() + 1) });
}

#[nursery]
async fn body_forms(n: Nursery, c: &Cell<u32>) -> Result<u32, String> {
    let v = 'outer: {
        if c.get() == 0 {
            break 'outer 5;
        }
        7
    };
    helper(&n, c);
    let add_one = async |x: u32| x + 1;
    let w = add_one(v).await;
    let k = 3u32;
    let copy = move || k + 1;
    n.spawn(async move {
        assert_eq!(copy(), 4);
        Ok::<(), String>(())
    });
    #[nursery]
    async fn inner(n: Nursery, c: &Cell<u32>) -> u32 {
        n.start_soon(async { c.set(c.get() + 10) });
        1
    }
    let i = inner(c).await;
    macro_rules! twice {
        ($e:expr) => {
            $e * 2
        };
    }
    let t = twice!(w);
    if t > 100 {
        return Err("big".into());
    }
    let _: u32 = "5".parse::<u32>().map_err(|e| e.to_string())?;
    Ok(t + i)
}

struct P {
    n: u32,
}

#[nursery]
async fn shadowed(n: Nursery, xs: &[u32], p: P) -> u32 {
    n.start_soon(async {});
    let s1 = {
        let n = 1u32;
        n
    };
    let s2 = xs.iter().map(|n| n + 1).sum::<u32>();
    let s3 = match Some(2u32) {
        Some(n) => n,
        None => 0,
    };
    let s4 = if let Some(n) = Some(3u32) { n } else { 0 };
    let mut s5 = 0;
    for n in xs {
        s5 += n;
    }
    let P { n: s6 } = p;
    let s7 = {
        let (n, _) = (4u32, 0);
        n
    };
    let s8 = {
        let [n, ..] = [5u32, 6];
        n
    };
    let s9 = {
        let Some(n) = Some(6u32) else { return 0 };
        n
    };
    let mut it = xs.iter();
    let mut s10 = 0;
    while let Some(n) = it.next() {
        s10 += n;
    }
    let s11 = {
        let n @ 1..=9 = 7u32 else { return 0 };
        n
    };
    let s12 = (async |n: u32| n)(8).await;
    let s13 = {
        let ref n = 9u32;
        *n
    };
    let n = 10u32;
    let s14 = std::thread::spawn(move || n).join().unwrap();
    s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11 + s12 + s13 + s14
}

fn main() {
    let c = Cell::new(0);
    trellis::run(async {
        assert_eq!(S::new_self(2).await, S(2));
        assert_eq!(S::res_self(2).await, Ok(S(2)));
        let mut s = S(5);
        assert_eq!(Pin::new(&mut s).pinned().await, 5);
        assert_eq!(*s.field().await, 5);
        assert_eq!(Box::new(S(6)).boxed().await, 6);
        assert_eq!(s.make().await, 6);
        assert_eq!(s.def().await, 0);
        assert_eq!(Runner.run().await, Err("e".to_string()));
        assert_eq!(generic(3).await, 3);
        assert_eq!(generic_error::<_, String>(3).await, Ok(3));
        assert_eq!(format!("{:?}", impl_trait(3u8).await), "3");
        assert_eq!(tuple().await, (1, "a".into()));
        assert_eq!(option(None).await, None);
        assert_eq!(option(Some(1)).await, Some(2));
        assert!(dyn_error("x").await.is_err());
        assert_eq!(dyn_error("4").await.ok(), Some(4));
        assert!(io_error().await.is_err());
        assert!(anyhow_error("x").await.is_err());
        assert_eq!(anyhow_error("7").await.ok(), Some(7));
        assert_eq!(defaulted().await, Err("d".into()));
        assert!(defaulted_given("x").await.is_err());
        assert_eq!(lifetimes("a", "b").await, Ok("a"));
        assert_eq!(format!("{:?}", result_impl().await), "Err(\"ri\")");
        assert_eq!(body_forms(&c).await, Ok(13));
        assert_eq!(c.get(), 11);
        let sum = 1 + 5 + 2 + 3 + 3 + 10 + 4 + 5 + 6 + 3 + 7 + 8 + 9 + 10;
        assert_eq!(shadowed(&[1, 2], P { n: 10 }).await, sum);
    });
}
