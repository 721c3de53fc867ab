//! Generating code from checked inputs, and the fallback items emitted next to errors.
//!
//! Hygiene: every path is absolute and goes through `trellis::__private` (or the `crate = path`
//! the user gave), and nothing generated introduces a name the body can see except the handle
//! the user named.
//!
//! Why the nursery body is a *non-`move`* async closure: the closure then borrows the
//! function's arguments from the function's own frame, which outlives the nursery, so a child
//! may borrow an argument (`n.spawn(async { data.len() })`). With `async move` the arguments
//! would live inside the body's future, and a child borrowing them would be rejected. A body
//! that consumes an argument still captures that one by value.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::visit::Visit;
use syn::{GenericArgument, ItemFn, Path, PathArguments, ReturnType, TraitItemFn, Type};

use crate::parse::{
    BlockInput, Clock, EntryKind, EntryOptions, Handle, NurseryOptions, Output, is_never, output_of,
};

/// The path to the trellis crate: `crate = path` or `::trellis`.
fn krate(path: Option<&Path>) -> TokenStream {
    match path {
        Some(path) => path.to_token_stream(),
        None => quote!(::trellis),
    }
}

/// Whether `ty` mentions `impl Trait`, which a closure's return type annotation and a
/// turbofish cannot name: the annotation is then left to inference.
fn contains_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// `!` as stable Rust lets it be named everywhere, also as a type argument:
/// `<fn() -> ! as HasOutput>::Output`.
fn never_type(krate: &TokenStream) -> TokenStream {
    quote!(<fn() -> ! as #krate::__private::HasOutput>::Output)
}

/// The handle's type with its lifetimes filled in: `Nursery` → `Nursery<'_, '_, _>`,
/// `Nursery<E>` → `Nursery<'_, '_, E>`; anything already carrying lifetimes stays as written.
/// The user's path is kept (not replaced by `::trellis::Nursery`) so that their `use` of it
/// stays used and errors about it point at what they wrote.
fn handle_type(ty: &Type) -> Type {
    fill_handle_type(ty, &syn::parse_quote!(_))
}

/// [`handle_type`] with `error` for a missing error type.
fn fill_handle_type(ty: &Type, error: &Type) -> Type {
    // A type passed through `macro_rules!` as `$t:ty` arrives in an invisible group.
    if let Type::Group(group) = ty {
        return fill_handle_type(&group.elem, error);
    }
    let mut ty = ty.clone();
    let segment = match &mut ty {
        Type::Path(path) => path.path.segments.last_mut(),
        _ => None,
    };
    if let Some(segment) = segment.filter(|s| s.ident == "Nursery") {
        match &mut segment.arguments {
            PathArguments::None => {
                segment.arguments =
                    PathArguments::AngleBracketed(syn::parse_quote!(<'_, '_, #error>));
            }
            PathArguments::AngleBracketed(args) => {
                let lifetimes = args
                    .args
                    .iter()
                    .any(|a| matches!(a, GenericArgument::Lifetime(_)));
                let types = args
                    .args
                    .iter()
                    .any(|a| matches!(a, GenericArgument::Type(_)));
                if !lifetimes {
                    args.args.insert(0, syn::parse_quote!('_));
                    args.args.insert(0, syn::parse_quote!('_));
                }
                // `Nursery<'_, '_>`: the error type is inferred, as for `Nursery`.
                if !types {
                    args.args.push(syn::parse_quote!(#error));
                }
            }
            _ => {}
        }
    }
    ty
}

/// `mut n: Nursery<'_, '_, _>` / `n`: the body closure's parameter.
fn handle_param(handle: &Handle) -> TokenStream {
    let Handle {
        ident,
        mutability,
        ty,
    } = handle;
    match ty {
        Some(ty) => {
            let ty = handle_type(ty);
            quote!(#mutability #ident: #ty)
        }
        None => quote!(#mutability #ident),
    }
}

/// Expands a checked `#[nursery]` function.
pub(crate) fn nursery_fn(func: ItemFn, handle: &Handle, options: &NurseryOptions) -> TokenStream {
    let krate = krate(options.krate.as_ref());
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let param = handle_param(handle);
    // The body's task is named after the function (in errors, instruments, the tree).
    let name = sig.ident.to_string();
    let call = match output_of(&sig) {
        Output::Unit => quote! {
            #krate::__private::unit_output(
                #krate::__private::nursery_named(#name, async |#param| -> () #block).await
            )
        },
        Output::Result { ty } => {
            let ret = (!contains_impl_trait(&ty)).then(|| quote!(-> #ty));
            let map_err = match &options.map_err {
                Some(map_err) => map_err.to_token_stream(),
                None => quote!(#krate::__private::first_error),
            };
            quote! {
                #krate::__private::result_output(
                    #krate::__private::nursery_named(#name, async |#param| #ret #block).await,
                    #map_err,
                )
            }
        }
        Output::Never => {
            // The annotation makes a body that can finish a type error ("expected `!`,
            // found `()`") instead of an unreachable value at run time.
            let never = never_type(&krate);
            quote! {
                #krate::__private::never_output(
                    #krate::__private::nursery_named(#name, async |#param| -> #never #block).await
                )
            }
        }
        Output::Value { ty } if contains_impl_trait(&ty) => quote! {
            // `impl Trait` is no `Result` and cannot be named in a turbofish.
            #krate::__private::value_output(
                #krate::__private::nursery_named(#name, async |#param| {
                    #krate::__private::infallible(async #block).await
                })
                .await,
            )
        },
        Output::Value { ty } => {
            // A plain value or an alias of a `Result` (`type Res<T> = Result<T, MyError>`):
            // the type checker tells which (`__private::OutputProbe`). The probe is computed
            // twice (for the body and for the function's value) rather than bound to a
            // variable: a `let` pattern would resolve to a unit struct of the user's of the
            // same name, hygiene or not (items resolve at the call site). Its traits are in
            // scope only in the blocks that compute it, not in the body.
            let tag = quote! {
                {
                    use #krate::__private::{ResultKind as _, ValueKind as _};
                    (&#krate::__private::OutputProbe::<#ty>::new()).trellis_output_kind()
                }
            };
            let map_err = match &options.map_err {
                Some(map_err) => map_err.to_token_stream(),
                None => quote!(#krate::__private::FirstError),
            };
            quote! {
                #tag.output(
                    #krate::__private::nursery_named(#name, async |#param| {
                        #tag.body::<#ty, _>(async #block).await
                    })
                    .await,
                    #map_err,
                )
            }
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #call
        }
    }
}

/// The item emitted next to the errors of a `#[nursery]` function: its public signature (the
/// handle removed, `async` added if it was missing, as the user meant it) with a body that
/// cannot fail to compile, so callers and trait impls see the function they expect and no
/// follow-on error appears. A return type naming `Nursery` (an escape the user was told about)
/// is dropped, since it cannot be written without lifetimes to borrow from.
pub(crate) fn fallback_fn(mut func: ItemFn, removed: &[Type]) -> TokenStream {
    func.sig.asyncness.get_or_insert_with(Default::default);
    if matches!(&func.sig.output, ReturnType::Type(_, ty) if mentions_nursery(ty)) {
        func.sig.output = ReturnType::Default;
    }
    let ItemFn {
        attrs, vis, sig, ..
    } = func;
    let infallible: Type = syn::parse_quote!(::core::convert::Infallible);
    let removed = removed.iter().map(|ty| fill_handle_type(ty, &infallible));
    quote! {
        #(#attrs)*
        #[allow(unused_variables, clippy::unused_async)]
        #vis #sig {
            #(let _: ::core::marker::PhantomData<#removed>;)*
            ::core::unreachable!()
        }
    }
}

/// Whether a type names `Nursery` anywhere.
fn mentions_nursery(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_path_segment(&mut self, segment: &'ast syn::PathSegment) {
            self.0 |= segment.ident == "Nursery";
            syn::visit::visit_path_segment(self, segment);
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// The declaration emitted next to the error for `#[nursery]` on a trait declaration.
pub(crate) fn fallback_trait_decl(decl: TraitItemFn) -> TokenStream {
    decl.to_token_stream()
}

/// Expands a checked `open_nursery! { |n| ... }`.
pub(crate) fn block(input: BlockInput) -> TokenStream {
    let krate = krate(input.krate.as_ref());
    let BlockInput {
        movability,
        handle,
        output,
        body,
        ..
    } = input;
    let param = handle_param(&handle);
    let ret = output.map(|ty| quote!(-> #ty));
    quote! {
        #krate::__private::nursery(async #movability |#param| #ret { #(#body)* }).await
    }
}

/// Expands a checked `#[trellis::main]` / `#[trellis::test]` function.
pub(crate) fn entry(func: ItemFn, kind: EntryKind, options: &EntryOptions) -> TokenStream {
    let krate = krate(options.krate.as_ref());
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = func;
    sig.asyncness = None;
    let runner = match options.clock {
        Clock::Real => quote!(block_on),
        Clock::Mock => quote!(block_on_mock_clock),
        Clock::Autojump => quote!(block_on_autojump),
    };
    // Naming the output type lets `?` in the body know what it converts into.
    let turbofish = match &sig.output {
        ReturnType::Default => Some(quote!(::<(), _>)),
        // `block_on::<!, _>` would need the unstable never type.
        ReturnType::Type(_, ty) if is_never(ty) => {
            let never = never_type(&krate);
            Some(quote!(::<#never, _>))
        }
        ReturnType::Type(_, ty) if !contains_impl_trait(ty) => Some(quote!(::<#ty, _>)),
        ReturnType::Type(..) => None,
    };
    let test_attr = (kind == EntryKind::Test).then(|| quote!(#[::core::prelude::v1::test]));
    if options.shuffle {
        // The body runs once per seed, so it is made by a closure (a test takes no
        // arguments: the closure captures nothing and can be called again).
        let builder = match options.clock {
            Clock::Real => quote!(new()),
            Clock::Mock => quote!(new().mock_clock()),
            Clock::Autojump => quote!(new().autojump()),
        };
        return quote! {
            #test_attr
            #(#attrs)*
            #vis #sig {
                #krate::__private::block_on_shuffled #turbofish(
                    #krate::__private::Builder::#builder,
                    || async move #block,
                )
            }
        };
    }
    quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            #krate::__private::#runner #turbofish(async move #block)
        }
    }
}

/// The item emitted next to the errors of an entry-point function: a plain `fn` with no
/// arguments and the same output, not registered as a test, so nothing else fails.
pub(crate) fn fallback_entry(func: ItemFn) -> TokenStream {
    let ItemFn {
        mut attrs,
        vis,
        mut sig,
        ..
    } = func;
    sig.asyncness = None;
    // The handle types the parameters named stay mentioned, so a `use trellis::Nursery` stays
    // used beside the error (`#[nursery]` below `#[trellis::main]`).
    let infallible: Type = syn::parse_quote!(::core::convert::Infallible);
    let handles: Vec<Type> = std::mem::take(&mut sig.inputs)
        .into_iter()
        .filter_map(|arg| match arg {
            syn::FnArg::Typed(param) => {
                let ty = match &*param.ty {
                    Type::Reference(reference) => (*reference.elem).clone(),
                    other => other.clone(),
                };
                crate::parse::is_nursery_type(&ty).then(|| fill_handle_type(&ty, &infallible))
            }
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    sig.generics = Default::default();
    // A `#[nursery]` below would report the signature emptied here.
    attrs.retain(|attr| !attr.path().is_ident("test") && !crate::parse::is_nursery_attribute(attr));
    quote! {
        #(#attrs)*
        #[allow(dead_code)]
        #vis #sig {
            #(let _: ::core::marker::PhantomData<#handles>;)*
            ::core::unreachable!()
        }
    }
}
