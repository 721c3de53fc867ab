//! Procedural macros for [trellis](https://docs.rs/trellis): `#[nursery]`, `open_nursery!`,
//! `#[trellis::main]` and `#[trellis::test]`.
//!
//! Use them through the `trellis` crate, which re-exports them; the generated code refers to
//! `::trellis::__private` (or to the path given with `crate = path`).
//!
//! Layout: this file holds the documented entry points (each a thin wrapper of a function on
//! `proc_macro2` tokens, which `tests.rs` calls); `parse.rs` reads and checks the input into
//! typed views that keep the user's tokens for spans, `escape.rs` finds the handle escaping
//! the body, `expand.rs` writes the code (and the fallback items emitted next to errors),
//! `error.rs` collects diagnostics.

#![forbid(unsafe_code)]

mod error;
mod escape;
mod expand;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::Parser;

use crate::error::Errors;
use crate::parse::{BlockInput, EntryInput, EntryKind, EntryOptions, NurseryInput, NurseryOptions};

/// Turns an `async fn` into a nursery: its body may spawn children that borrow the function's
/// arguments, and the function returns only when every child has finished.
///
/// The handle is the function's first parameter (after `self`), written with the bare type
/// `Nursery`; the macro fills in its lifetimes and error type and removes it from the
/// signature, so callers call `serve(&listener)`:
///
/// ```
/// use trellis::{Nursery, nursery};
///
/// #[nursery]
/// async fn fetch_all(n: Nursery, urls: &[&str]) -> Result<(), String> {
///     for url in urls {
///         let _child = n.spawn(async move {
///             if url.is_empty() { Err(format!("empty url")) } else { Ok(()) }
///         });
///     }
///     Ok(())
/// }
///
/// trellis::run(async {
///     assert_eq!(fetch_all(&["a", "b"]).await, Ok(()));
///     assert_eq!(fetch_all(&["a", ""]).await, Err("empty url".to_string()));
/// });
/// ```
///
/// # What it expands to
///
/// ```text
/// #[nursery]
/// async fn serve(n: Nursery, listener: &Listener) -> Result<T, E> { BODY }
/// ```
///
/// becomes (with `::trellis::__private::*` being thin forwarding helpers)
///
/// ```text
/// async fn serve(listener: &Listener) -> Result<T, E> {
///     match ::trellis::nursery(async |n: Nursery<'_, '_, _>| -> Result<T, E> { BODY }).await {
///         Ok(value) => Ok(value),
///         Err(group) => Err(group.into_first()),   // or `map_err(group)`
///     }
/// }
/// ```
///
/// The closure is deliberately not `move`: the arguments stay in the function's frame, which
/// outlives the nursery, so children may borrow them.
///
/// # Return types
///
/// - **`()`** (or no return type): the body returns `()`; children return `()` too (the
///   nursery's error type is `Infallible`, so nothing can fail but a panic).
/// - **`Result<T, E>`** (any type whose last path segment is `Result`, so `io::Result<T>`
///   works): the body returns it and `?` works in it; children return `()` or
///   `Result<_, E>`. When the body or children fail, the nursery cancels the rest and the
///   function returns **the first error** (`ErrorGroup::into_first`); the others are dropped.
///   To keep them, give `map_err = function` with a function from `ErrorGroup<E>` to `E`.
/// - **`!`**: the body never returns (a server `loop`, a body that ends in `panic!`); as
///   with `()`, children cannot fail. The body is checked as `!`, so one that can finish is
///   a type error ("expected `!`, found `()`"; `sleep_forever()` returns `()`, so end such
///   a body with `loop { sleep_forever().await }`). Only a panic or a scope around the
///   call ends it: `move_on_after(d, serve())` gives `None`.
/// - **an alias of a `Result`** (`type Res<T> = Result<T, MyError>`, whose name the macro
///   cannot see through): as `Result<T, E>`; the type checker tells it from a plain value.
/// - **any other `T`**: the body returns `T`; as with `()`, children cannot fail (so
///   `map_err` is an error there). A return type that is a type parameter is such a `T`.
///
/// A panic in a child (or the body) is resumed from the function once every child is gone.
///
/// The body is checked as an async closure body with the declared return type: unlike in a
/// plain `async fn`, a returned value gets no implicit coercion (write `s.as_str()`, not
/// `&s`, to return a `&str` from a `String`).
///
/// # Cancellation
///
/// A nursery has no cancel of its own (a failure aside), so the function always returns the
/// body's value or an error. To cancel it, cancel a scope around the call
/// (`trellis::cancel_scope`, `move_on_after`): that scope reports the cancellation.
///
/// # Options
///
/// - `#[nursery(n)]` or `#[nursery(name = n)]`: name the handle without a parameter (or pick
///   the parameter with that name when its type is an alias).
/// - `crate = path`: where the `trellis` crate is, for crates that re-export it.
/// - `map_err = function`: how the nursery's `ErrorGroup<E>` becomes the function's `E`.
///
/// # Errors at compile time
///
/// The function must be `async`, take exactly one handle by value and as a plain identifier,
/// first in its parameter list, and must not return the handle (it would escape).
///
/// The common escapes of the handle get one error naming the rule and the fix, before the
/// borrow checker's: the handle used by a child (inside the `async` block given to
/// `n.spawn` / `n.start_soon`, or the closure given to `n.spawn_with` / `n.start`: give the
/// child its own handle with `n.spawn_with(async |n| ..)`), stored in a variable or
/// parameter declared outside the body, moved to a thread or another runtime's task, or put
/// in a `'static` box. A shape the macro does not recognise still fails to compile, with
/// the compiler's error; the guide's [Why did this not compile?] section explains those.
///
/// [Why did this not compile?]: https://docs.rs/trellis/latest/trellis/guide/index.html#why-did-this-not-compile
#[proc_macro_attribute]
pub fn nursery(args: TokenStream, item: TokenStream) -> TokenStream {
    nursery_tokens(args.into(), item.into()).into()
}

/// [`nursery`] on `proc_macro2` tokens, so that tests can call it.
fn nursery_tokens(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let mut errors = Errors::default();
    let options = NurseryOptions::parse(args, &mut errors);
    let input = NurseryInput::parse(item, &options, &mut errors);
    let item = match input {
        NurseryInput::Fn {
            func,
            handle: Some(handle),
            ..
        } if errors.is_empty() => return expand::nursery_fn(func, &handle, &options),
        NurseryInput::Fn { func, removed, .. } => expand::fallback_fn(func, &removed),
        NurseryInput::Closure(closure) => {
            // An expression position takes one expression.
            let errors = errors.into_compile_errors();
            return quote!({ #errors #closure });
        }
        NurseryInput::TraitDecl(decl) => expand::fallback_trait_decl(decl),
        NurseryInput::Other(item) => item,
    };
    let errors = errors.into_compile_errors();
    quote!(#errors #item)
}

/// Opens a nursery inside any async code and evaluates to its result.
///
/// `open_nursery! { |n| BODY }` is `trellis::nursery(async |n| { BODY }).await`: it returns
/// `Result<V, ErrorGroup<E>>` where the body returns `()` (`V = ()`, `E = Infallible`),
/// `Result<V, E>`, or never returns (`|n| -> ! ..`: as for `()`, though it only ends by a
/// panic or a scope around it). Annotate the body's type when inference needs it:
/// `open_nursery! { |n| -> Result<u32, MyError> ... }`. `move |n|` moves captured variables
/// in (children can then not borrow them). `crate = path;` before the closure names the
/// `trellis` crate for re-exports.
///
/// The handle's common escapes get the same errors as in [`#[nursery]`](macro@nursery).
///
/// (It is not called `nursery!` because a crate cannot export an attribute `nursery` and a
/// function-like `nursery!` side by side.)
///
/// ```
/// use trellis::open_nursery;
///
/// trellis::run(async {
///     let words = vec!["a", "b"];
///     let result = open_nursery! { |n| -> Result<usize, String>
///         for word in &words {
///             let _child = n.spawn(async move { println!("{word}") });
///         }
///         Ok(words.len())
///     };
///     assert_eq!(result.map_err(|e| e.into_first()), Ok(2));
/// });
/// ```
///
/// # What it expands to
///
/// ```text
/// ::trellis::nursery(async |n| -> Result<usize, String> { BODY }).await
/// ```
#[proc_macro]
pub fn open_nursery(input: TokenStream) -> TokenStream {
    open_nursery_tokens(input.into()).into()
}

/// [`open_nursery!`] on `proc_macro2` tokens, so that tests can call it.
fn open_nursery_tokens(input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let input = match BlockInput::parse.parse2(input) {
        Ok(input) => input,
        Err(error) => return error.into_compile_error(),
    };
    let mut errors = Errors::default();
    let body = syn::Block {
        brace_token: Default::default(),
        stmts: input.body.clone(),
    };
    parse::check_escape(&body, &input.handle.ident, &[], &mut errors);
    if !errors.is_empty() {
        let errors = errors.into_compile_errors();
        return quote!({ #errors });
    }
    expand::block(input)
}

/// Runs `async fn main` on a trellis runtime.
///
/// The function must be `async` and take no arguments; it may return `()` or `Result<(), E>`
/// (any type `fn main` may return, `!` included). Options: `mock_clock`, `autojump`
/// (virtual time, see `trellis::Builder`) and `crate = path`.
///
/// ```
/// #[trellis::main]
/// async fn main() -> Result<(), std::io::Error> {
///     trellis::sleep(std::time::Duration::from_millis(1)).await;
///     Ok(())
/// }
/// # // rustdoc runs this `main`
/// ```
///
/// # What it expands to
///
/// ```text
/// fn main() -> Result<(), std::io::Error> {
///     trellis::Builder::new().run(async move { BODY })
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(args.into(), item.into(), EntryKind::Main).into()
}

/// Runs an `async fn` test on a fresh trellis runtime.
///
/// Like `#[test]`, the function takes no arguments and returns `()` or `Result<(), E>`
/// (not `!`: a test that never returns could only fail or hang, so that is a compile error;
/// for one that is meant to panic, return `()` and add `#[should_panic]`).
/// `#[trellis::test(mock_clock)]` runs it on virtual time that moves only through
/// `trellis::advance`; `#[trellis::test(autojump)]` on virtual time that jumps to the next
/// deadline whenever every task is blocked, so a test of a one-day timeout finishes at once.
/// `crate = path` names the `trellis` crate for re-exports.
/// `#[trellis::test(shuffle)]` (with a clock or not) runs the test once per seed of
/// `trellis::Builder::shuffle_seed`, seeds `0..TRELLIS_SHUFFLE_SEEDS` (default 8), stops at
/// the first failure and prints its seed; `TRELLIS_SHUFFLE_SEED=s` runs only seed `s`
/// (on a mock clock, the same run again).
///
/// ```
/// use std::time::Duration;
///
/// #[trellis::test(autojump)]
/// async fn a_day_passes_at_once() {
///     let woke = trellis::move_on_after(Duration::from_secs(86_400), trellis::sleep_forever()).await;
///     assert!(woke.is_none());
/// }
/// # fn main() {} // `#[test]` functions exist only under `cargo test`
/// ```
///
/// # What it expands to
///
/// ```text
/// #[test]
/// fn a_day_passes_at_once() {
///     trellis::Builder::new().autojump().run(async move { BODY })
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(args.into(), item.into(), EntryKind::Test).into()
}

/// The shared body of [`main`] and [`test`], on `proc_macro2` tokens so that tests can
/// call it.
fn entry(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
    kind: EntryKind,
) -> proc_macro2::TokenStream {
    let mut errors = Errors::default();
    let options = EntryOptions::parse(args, kind, &mut errors);
    let item = match EntryInput::parse(item, kind, &mut errors) {
        Ok(input) if errors.is_empty() => return expand::entry(input.func, kind, &options),
        Ok(input) => expand::fallback_entry(input.func),
        Err(item) => item,
    };
    let errors = errors.into_compile_errors();
    quote!(#errors #item)
}
