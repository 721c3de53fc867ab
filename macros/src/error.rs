//! Collecting diagnostics.
//!
//! Every check in `parse.rs` pushes into one [`Errors`] instead of returning at the first
//! problem, so a user with an unknown option *and* a missing `async` sees both at once
//! (serde's `internals/ctxt.rs` does the same). When anything was pushed, the entry point
//! emits the combined `compile_error!`s next to a fallback item (see `expand::fallback_*`),
//! never next to a half-expanded one: the fallback compiles cleanly, so the user sees the
//! macro's error and nothing that follows from it.

use proc_macro2::{Span, TokenStream};

/// Diagnostics gathered while reading one macro input.
#[derive(Default)]
pub(crate) struct Errors {
    /// The combined error, `None` while the input is fine.
    combined: Option<syn::Error>,
}

impl Errors {
    /// Records `message` at `span`. Messages are lowercase, quote syntax in backticks, and say
    /// what to write instead.
    pub(crate) fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push_error(syn::Error::new(span, message));
    }

    /// Records an error produced by `syn` (a parse failure of the options).
    pub(crate) fn push_error(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.combined.is_none()
    }

    /// The `compile_error!` invocations for everything recorded, in the order it was found.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.combined
            .map(syn::Error::into_compile_error)
            .unwrap_or_default()
    }
}
