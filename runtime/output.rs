//! What nursery tasks return: [`TaskOutput`] for children, [`BodyOutput`] for the body.
//! They let a child that cannot fail return `()`, and let the body's return type fix the
//! nursery's error type.

#![forbid(unsafe_code)]

use std::convert::Infallible;

/// The value a nursery child produces: `()` or `Result<T, E>`.
///
/// Children that cannot fail return `()` and need no `Ok(())`.
#[diagnostic::on_unimplemented(
    message = "a nursery child must return `()` or `Result<_, {E}>`, not `{Self}`",
    note = "the nursery's error type `{E}` is fixed by what its body returns; \
            return `Ok(..)` from the body (not `()`) to let children fail with an error"
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

/// The value a nursery body returns: `()` (the nursery cannot fail) or `Result<T, E>` (its
/// error type `E` becomes the nursery's).
#[diagnostic::on_unimplemented(
    message = "a nursery body must return `()` or `Result<_, _>`, not `{Self}`",
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
