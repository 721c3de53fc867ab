//! What nursery tasks return: [`TaskOutput`] for children, [`BodyOutput`] for the body.
//! They let a child that cannot fail return `()`, a child or body that never returns have
//! type `!`, and the body's return type fix the nursery's error type.
//!
//! `!` cannot be named on stable Rust, but `<fn() -> ! as HasOutput>::Output` is `!`, and
//! impls for that projection are impls for `!`. Edition 2024 gives a future whose code
//! never finishes (`async { loop { .. } }`, an `async` block ending in `panic!`) the output
//! type `!` rather than `()` (the never-type fallback), so such tasks need these impls.

#![forbid(unsafe_code)]

use std::convert::Infallible;

/// Names the return type of a function pointer, so that `!` can be named on stable.
///
/// Public only because the impls for `!` name it (a private trait may not appear in a
/// public impl); it is reachable as `trellis::__private::HasOutput`, not part of the API.
pub trait HasOutput {
    /// The return type.
    type Output;
}

impl<O> HasOutput for fn() -> O {
    type Output = O;
}

/// The never type `!`, as a name stable Rust accepts.
type Never = <fn() -> ! as HasOutput>::Output;

/// The value a nursery child produces: `()`, `Result<T, E>`, or `!` (it never returns).
///
/// Children that cannot fail return `()` and need no `Ok(())`. A child that never returns
/// (a worker `loop`, a task that ends in `panic!`) has type `!`; its
/// [`JoinHandle`](crate::JoinHandle) yields `!`, so awaiting it only ever gives a
/// [`JoinError`](crate::JoinError) (the child failed or was cancelled). (The impl for `!`
/// reads `<fn() -> ! as HasOutput>::Output` below: that is how stable Rust names `!`.)
///
/// A child's bare `Ok(..)` takes the nursery's error type, which something must name: the
/// body (`Ok::<_, MyError>(..)`, a typed call, `async |n| -> Result<_, MyError>`), or a child
/// (a typed `Err`). A `?` only converts into it, so it does not name it; the compiler then
/// says `type annotations needed` at the first child's `Ok(..)` (see the `# Errors` section
/// of [`nursery`](crate::nursery())).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let ticks = std::cell::Cell::new(0);
/// trellis::Builder::new().autojump().run(async {
///     // The `!` worker below ends only when the scope around the nursery is cancelled.
///     trellis::move_on_after(Duration::from_millis(3500), trellis::nursery(async |n| {
///         n.spawn(async { Ok(1) }); // `Result<i32, E>`: its handle yields `i32`
///         n.spawn(async {}); // `()`: cannot fail
///         n.spawn(async {
///             // `!`: never returns, ends when the nursery is cancelled
///             loop {
///                 trellis::sleep(Duration::from_secs(1)).await;
///                 ticks.set(ticks.get() + 1);
///             }
///         });
///         Ok::<_, std::io::Error>(())
///     }))
///     .await;
/// });
/// assert_eq!(ticks.get(), 3);
/// ```
#[diagnostic::on_unimplemented(
    message = "a nursery child must return `()`, `Result<_, {E}>` or `!`, not `{Self}`",
    note = "a child (or a `serve_tcp` handler) returning a value wraps it: `Ok(value)`",
    note = "the nursery's error type `{E}` is fixed by what its body returns: a body \
            returning `()` has none, so its children cannot fail with an error; one \
            returning `Ok::<_, MyError>(..)` lets them fail with `MyError`"
)]
pub trait TaskOutput<E> {
    /// What the child's [`JoinHandle`](crate::JoinHandle) yields.
    type Value;
    /// Splits the output into a value or the nursery's error.
    fn into_result(self) -> Result<Self::Value, E>;
}

impl<E> TaskOutput<E> for () {
    type Value = ();
    fn into_result(self) -> Result<(), E> {
        Ok(())
    }
}

impl<T, E> TaskOutput<E> for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, E> {
        self
    }
}

/// A child that never returns: its handle yields `!`.
impl<E> TaskOutput<E> for Never {
    type Value = Never;
    fn into_result(self) -> Result<Never, E> {
        self
    }
}

/// The value a nursery body returns: `()` (the nursery cannot fail), `Result<T, E>` (its
/// error type `E` becomes the nursery's), or `!` (it never returns: treated as `()`).
///
/// A body that never returns (it ends in `panic!`, or loops until the nursery is
/// cancelled) fixes no error type, and no default can be inferred from its children, so
/// it counts as a body returning `()`: its nursery's error type is
/// [`Infallible`], and its value (never produced) is `()`. When its children can fail,
/// name the error type in the body's return type instead:
/// `async |n| -> Result<(), MyError> { .. loop { .. } }`. (The impl for `!` reads
/// `<fn() -> ! as HasOutput>::Output` below: that is how stable Rust names `!`.)
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct Lost;
///
/// let out = trellis::Builder::new().autojump().run(async {
///     // `()` and `!`: the nursery cannot fail (its error type is `Infallible`).
///     let _: Option<Result<_, trellis::ErrorGroup<std::convert::Infallible>>> =
///         trellis::move_on_after(Duration::from_secs(2), trellis::nursery(async |_n| {
///             loop {
///                 trellis::sleep(Duration::from_secs(1)).await;
///             }
///         }))
///         .await;
///     // `Result<T, E>`: `E` is the nursery's error type, here named for a body that
///     // never returns.
///     trellis::nursery(async |n| -> Result<(), Lost> {
///         n.spawn(async { Err::<(), _>(Lost) });
///         trellis::sleep_forever().await;
///         loop {}
///     })
///     .await
/// });
/// assert_eq!(out.unwrap_err().len(), 1);
/// ```
#[diagnostic::on_unimplemented(
    message = "a nursery body must return `()`, `Result<_, _>` or `!`, not `{Self}`",
    note = "wrap the value: `Ok::<_, YourError>(value)`"
)]
pub trait BodyOutput {
    /// What the nursery yields when the body succeeds.
    type Value;
    /// The error type of the body and of every child.
    type Error;
    /// Splits the output into a value or an error.
    fn into_result(self) -> Result<Self::Value, Self::Error>;
}

impl BodyOutput for () {
    type Value = ();
    type Error = Infallible;
    fn into_result(self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl<T, E> BodyOutput for Result<T, E> {
    type Value = T;
    type Error = E;
    fn into_result(self) -> Result<T, E> {
        self
    }
}

/// A body that never returns fixes no error type: its nursery cannot fail, as with `()`.
impl BodyOutput for Never {
    type Value = ();
    type Error = Infallible;
    fn into_result(self) -> Result<(), Infallible> {
        self
    }
}
