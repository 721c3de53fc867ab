//! Reading and checking the macro inputs.
//!
//! Each macro input becomes a typed view that keeps the user's tokens (and so their spans):
//! [`NurseryInput`] for `#[nursery]`, [`BlockInput`] for `open_nursery!`, [`EntryInput`] for
//! `#[trellis::main]` / `#[trellis::test]`. Everything the macro can see syntactically and the
//! type system would report badly (or far from the cause) is checked here and recorded in
//! [`Errors`]; `expand.rs` only runs on inputs that passed.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Block, Expr, FnArg, Ident, Item, ItemFn, Lit, Meta, Pat, Path, ReturnType, Signature, Stmt,
    Token, TraitItemFn, Type,
};

use crate::error::Errors;

/// The options of `#[nursery(...)]`.
#[derive(Default)]
pub(crate) struct NurseryOptions {
    /// `#[nursery(n)]` / `#[nursery(name = n)]`: the handle's name.
    pub(crate) name: Option<Ident>,
    /// `crate = path`: where `trellis` is, for crates that re-export it.
    pub(crate) krate: Option<Path>,
    /// `map_err = function`: turns the nursery's `ErrorGroup<E>` into the function's `E`.
    pub(crate) map_err: Option<Expr>,
}

/// Which clock `#[trellis::main]` / `#[trellis::test]` run on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// The system clock.
    Real,
    /// `mock_clock`: virtual time that moves only through `trellis::advance`.
    Mock,
    /// `autojump`: virtual time that jumps to the next deadline when every task is blocked.
    Autojump,
}

/// The options of `#[trellis::main(...)]` / `#[trellis::test(...)]`.
pub(crate) struct EntryOptions {
    /// The clock the runtime uses.
    pub(crate) clock: Clock,
    /// `crate = path`.
    pub(crate) krate: Option<Path>,
    /// `shuffle` (tests only): run the test under many `Builder::shuffle_seed` seeds.
    pub(crate) shuffle: bool,
}

/// Which entry-point attribute is being expanded; only used for messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// `#[trellis::main]`.
    Main,
    /// `#[trellis::test]`.
    Test,
}

impl EntryKind {
    /// The attribute as the user writes it.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            EntryKind::Main => "#[trellis::main]",
            EntryKind::Test => "#[trellis::test]",
        }
    }
}

/// The option's name (`autojump` in `#[trellis::test(autojump)]`), or `""` for a path
/// that is not a single identifier (reported as unknown by the caller).
fn option_key(meta: &Meta) -> String {
    meta.path()
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Parses the comma-separated options; a syntax error there is recorded and gives no options.
fn parse_metas(args: TokenStream, errors: &mut Errors) -> Vec<Meta> {
    match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => metas.into_iter().collect(),
        Err(error) => {
            errors.push_error(error);
            Vec::new()
        }
    }
}

/// Reads `crate = path` or `crate = "path"`.
fn parse_crate_path(value: &Expr, errors: &mut Errors) -> Option<Path> {
    match value {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
            Some(path.path.clone())
        }
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => match s.parse::<Path>() {
            Ok(path) => Some(path),
            Err(_) => {
                errors.push(
                    s.span(),
                    "`crate` takes a path to the trellis crate, e.g. `crate = my_crate::trellis`",
                );
                None
            }
        },
        _ => {
            errors.push(
                value.span(),
                "`crate` takes a path to the trellis crate, e.g. `crate = my_crate::trellis`",
            );
            None
        }
    }
}

/// The last path segment's name, as a string (`None` for anything but a plain path type).
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// A type as the user would write it in a message: `&mut u32`, `impl Fn(u8) -> u8`,
/// `Result<u8, String>` (`to_string` spaces every token: `& mut u32`; removing every space
/// glued words: `&mutu32`, `implFn()`).
pub(crate) fn type_text(ty: &Type) -> String {
    let spaced = ty.to_token_stream().to_string();
    let chars: Vec<char> = spaced.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '\'';
    let mut out = String::with_capacity(spaced.len());
    for (i, &c) in chars.iter().enumerate() {
        if c != ' ' {
            out.push(c);
            continue;
        }
        let (Some(&before), Some(&after)) = (chars.get(i.wrapping_sub(1)), chars.get(i + 1)) else {
            continue;
        };
        let keep = (word(before) && word(after))
            || before == ','
            || [before, after].iter().any(|c| ['+', '='].contains(c))
            || (before == '>' && i >= 2 && chars[i - 2] == '-')
            || (after == '-' && chars.get(i + 2) == Some(&'>'));
        if keep {
            out.push(' ');
        }
    }
    out
}

/// Whether `ty` is written as the nursery handle type (`Nursery`, `trellis::Nursery<...>`).
pub(crate) fn is_nursery_type(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|segment| segment.ident == "Nursery")
}

impl NurseryOptions {
    /// Reads `#[nursery(...)]`'s arguments.
    pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> Self {
        const EXPECTED: &str = "expected the handle's name (`#[nursery(n)]`), `name = n`, \
                                `crate = path` or `map_err = function`";
        let mut options = NurseryOptions::default();
        let mut seen_crate = false;
        let mut seen_map_err = false;
        for meta in parse_metas(args, errors) {
            let path = meta.path();
            let key = option_key(&meta);
            match (&meta, key.as_str()) {
                (Meta::NameValue(nv), "name") => match &nv.value {
                    Expr::Path(p) if p.path.get_ident().is_some() && p.qself.is_none() => {
                        let ident = p.path.get_ident().cloned();
                        options.set_name(ident, path.span(), errors);
                    }
                    other => errors.push(
                        other.span(),
                        "`name` takes the handle's identifier, e.g. `name = n`",
                    ),
                },
                (Meta::NameValue(nv), "crate") => {
                    if seen_crate {
                        errors.push(path.span(), "duplicate option `crate`: give it once");
                    }
                    seen_crate = true;
                    if let Some(krate) = parse_crate_path(&nv.value, errors) {
                        options.krate.get_or_insert(krate);
                    }
                }
                (Meta::NameValue(nv), "map_err") => {
                    if seen_map_err {
                        errors.push(path.span(), "duplicate option `map_err`: give it once");
                    }
                    seen_map_err = true;
                    options.map_err.get_or_insert_with(|| nv.value.clone());
                }
                (Meta::Path(_), "crate") => errors.push(
                    path.span(),
                    "`crate` takes a path to the trellis crate, e.g. `crate = my_crate::trellis`",
                ),
                (Meta::Path(_), "map_err") => errors.push(
                    path.span(),
                    "`map_err` takes a function from `ErrorGroup<E>` to `E`, \
                     e.g. `map_err = MyError::from_group`",
                ),
                (Meta::Path(_), name) if !name.is_empty() => {
                    options.set_name(path.get_ident().cloned(), path.span(), errors);
                }
                _ => errors.push(
                    path.span(),
                    format_args!(
                        "unknown option `{}`; {EXPECTED}",
                        path.to_token_stream().to_string().replace(' ', "")
                    ),
                ),
            }
        }
        options
    }

    /// Records the handle's name, refusing a second one.
    fn set_name(&mut self, ident: Option<Ident>, span: Span, errors: &mut Errors) {
        match (&self.name, ident) {
            (Some(first), Some(second)) => errors.push(
                second.span(),
                format_args!(
                    "the nursery handle is already named `{first}`: give one name, \
                     e.g. `#[nursery({first})]`"
                ),
            ),
            (None, Some(ident)) => self.name = Some(ident),
            (_, None) => errors.push(span, "the handle's name must be an identifier, e.g. `n`"),
        }
    }
}

impl EntryOptions {
    /// Reads `#[trellis::main(...)]` / `#[trellis::test(...)]`'s arguments.
    pub(crate) fn parse(args: TokenStream, kind: EntryKind, errors: &mut Errors) -> Self {
        let mut options = EntryOptions {
            clock: Clock::Real,
            krate: None,
            shuffle: false,
        };
        let mut clock_span: Option<(Span, &'static str)> = None;
        let mut seen_crate = false;
        for meta in parse_metas(args, errors) {
            let path = meta.path();
            let key = option_key(&meta);
            match (&meta, key.as_str()) {
                (Meta::Path(_), clock @ ("mock_clock" | "autojump")) => {
                    let (new, name) = if clock == "mock_clock" {
                        (Clock::Mock, "mock_clock")
                    } else {
                        (Clock::Autojump, "autojump")
                    };
                    match clock_span {
                        Some((_, first)) if first == name => errors.push(
                            path.span(),
                            format_args!("duplicate option `{name}`: give it once"),
                        ),
                        Some((_, first)) => errors.push(
                            path.span(),
                            format_args!(
                                "`{first}` and `{name}` both choose the clock: keep one \
                                 (`autojump` already runs on the mock clock)"
                            ),
                        ),
                        None => {
                            clock_span = Some((path.span(), name));
                            options.clock = new;
                        }
                    }
                }
                (Meta::Path(_), "shuffle") if kind == EntryKind::Test => {
                    if options.shuffle {
                        errors.push(path.span(), "duplicate option `shuffle`: give it once");
                    }
                    options.shuffle = true;
                }
                (Meta::Path(_), "shuffle") => errors.push(
                    path.span(),
                    "`shuffle` is for `#[trellis::test]` (it runs the test under many seeds); \
                     a program sets a seed with `trellis::Builder::shuffle_seed`",
                ),
                (Meta::NameValue(nv), "crate") => {
                    if seen_crate {
                        errors.push(path.span(), "duplicate option `crate`: give it once");
                    }
                    seen_crate = true;
                    if let Some(krate) = parse_crate_path(&nv.value, errors) {
                        options.krate.get_or_insert(krate);
                    }
                }
                (Meta::Path(_), "crate") => errors.push(
                    path.span(),
                    "`crate` takes a path to the trellis crate, e.g. `crate = my_crate::trellis`",
                ),
                // `autojump = true`, `shuffle(8)`: a flag given a value.
                (_, flag @ ("mock_clock" | "autojump" | "shuffle"))
                    if flag != "shuffle" || kind == EntryKind::Test =>
                {
                    errors.push(
                        path.span(),
                        format_args!(
                            "`{flag}` takes no value: write `{}({flag})]`{}",
                            kind.attribute().trim_end_matches(']'),
                            if flag == "shuffle" {
                                " (the number of seeds comes from TRELLIS_SHUFFLE_SEEDS)"
                            } else {
                                ""
                            },
                        ),
                    )
                }
                _ => errors.push(
                    path.span(),
                    format_args!(
                        "unknown option `{}` for `{}`; expected `mock_clock`, `autojump`{} \
                         or `crate = path`",
                        path.to_token_stream().to_string().replace(' ', ""),
                        kind.attribute(),
                        if kind == EntryKind::Test {
                            ", `shuffle`"
                        } else {
                            ""
                        },
                    ),
                ),
            }
        }
        options
    }
}

/// Whether a written type is `()` (also in parentheses).
fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(tuple) => tuple.elems.is_empty(),
        Type::Paren(paren) => is_unit(&paren.elem),
        _ => false,
    }
}

/// Whether a written type is the never type `!` (also in parentheses). Stable Rust accepts
/// `!` as the return type of a function, closure or `fn` pointer, but not as a type argument
/// (`Result<!, _>`, a turbofish), so the expansions name it there as
/// `<fn() -> ! as HasOutput>::Output`.
pub(crate) fn is_never(ty: &Type) -> bool {
    match ty {
        Type::Never(_) => true,
        Type::Paren(paren) => is_never(&paren.elem),
        Type::Group(group) => is_never(&group.elem),
        _ => false,
    }
}

/// How the function's output relates to the nursery's `Result<V, ErrorGroup<E>>`.
pub(crate) enum Output {
    /// No return type or `()`: the body returns `()` and children cannot fail (`E` is
    /// `Infallible`).
    Unit,
    /// A type whose last segment is `Result` (also `io::Result<T>`): the body returns it, its
    /// `E` is the nursery's error type, an `ErrorGroup<E>` is mapped back to `E`.
    Result {
        /// The written return type.
        ty: Box<Type>,
    },
    /// `!`: the body never returns (it loops until an enclosing scope cancels it, or ends in a
    /// panic); as with `()`, children cannot fail.
    Never,
    /// Any other type `T`: a plain value (wrapped in `Ok::<T, Infallible>`) or an alias of a
    /// `Result`; the expansion lets the type checker tell which (`__private::OutputProbe`).
    Value {
        /// The written return type.
        ty: Box<Type>,
    },
}

impl Output {
    /// Classifies a signature's return type.
    fn of(output: &ReturnType) -> Self {
        let ty = match output {
            ReturnType::Default => return Output::Unit,
            ReturnType::Type(_, ty) => ty,
        };
        if is_unit(ty) {
            return Output::Unit;
        }
        if is_never(ty) {
            return Output::Never;
        }
        match last_segment(ty) {
            Some(segment) if segment.ident == "Result" => Output::Result { ty: ty.clone() },
            _ => Output::Value { ty: ty.clone() },
        }
    }
}

/// The nursery handle of a `#[nursery]` function.
pub(crate) struct Handle {
    /// Its name, as the body uses it.
    pub(crate) ident: Ident,
    /// `mut n: Nursery` keeps its `mut`.
    pub(crate) mutability: Option<Token![mut]>,
    /// The type the user wrote (`None` when the handle was only named in the attribute).
    pub(crate) ty: Option<Box<Type>>,
}

/// What `#[nursery]` was put on.
pub(crate) enum NurseryInput {
    /// A function (free, inherent method, trait-impl method, trait default method). When the
    /// checks failed, `handle` may be missing.
    Fn {
        /// The function, handle parameters removed.
        func: ItemFn,
        /// The handle, if one was found.
        handle: Option<Handle>,
        /// The types of the removed nursery parameters (references stripped), which the
        /// fallback item still mentions so the user's `use trellis::Nursery` stays used.
        removed: Vec<Type>,
    },
    /// A method declaration in a trait (no body), handle parameters removed.
    TraitDecl(TraitItemFn),
    /// A closure (rustc rejects attributes on expressions, but should it get here), kept as
    /// written.
    Closure(TokenStream),
    /// Anything else, kept as written.
    Other(TokenStream),
}

impl NurseryInput {
    /// Reads and checks the item under `#[nursery]`.
    pub(crate) fn parse(item: TokenStream, options: &NurseryOptions, errors: &mut Errors) -> Self {
        if let Ok(mut func) = syn::parse2::<ItemFn>(item.clone()) {
            let removed = func
                .sig
                .inputs
                .iter()
                .filter_map(|arg| match arg {
                    FnArg::Typed(param) if is_nursery_type(strip_reference(&param.ty)) => {
                        Some(strip_reference(&param.ty).clone())
                    }
                    _ => None,
                })
                .collect();
            let handle = check_fn_signature(&mut func.sig, options, errors);
            check_map_err(&func.sig, options, errors);
            if let Some(handle) = &handle {
                let outer = outer_params(&func.sig);
                check_escape(&func.block, &handle.ident, &outer, errors);
            }
            return NurseryInput::Fn {
                func,
                handle,
                removed,
            };
        }
        if let Ok(mut decl) = syn::parse2::<TraitItemFn>(item.clone()) {
            remove_nursery_params(&mut decl.sig);
            errors.push(
                decl.sig.fn_token.span,
                "`#[nursery]` goes on the method's body, not on its declaration in a trait: \
                 declare it without the handle and put `#[nursery]` on the `async fn` in the \
                 `impl` block",
            );
            return NurseryInput::TraitDecl(decl);
        }
        let span = match syn::parse2::<Item>(item.clone()) {
            Ok(item) => item_keyword_span(&item),
            Err(_) => match syn::parse2::<Expr>(item.clone()) {
                Ok(Expr::Closure(closure)) => {
                    errors.push(
                        closure.or1_token.span,
                        "`#[nursery]` does not go on a closure; write \
                         `trellis::open_nursery! { |n| ... }` inside async code instead",
                    );
                    return NurseryInput::Closure(item);
                }
                _ => item
                    .clone()
                    .into_iter()
                    .next()
                    .map_or_else(Span::call_site, |t| t.span()),
            },
        };
        errors.push(
            span,
            "`#[nursery]` goes on an `async fn` that takes the nursery handle, \
             e.g. `#[nursery] async fn run(n: Nursery)`",
        );
        NurseryInput::Other(item)
    }
}

/// The span of the keyword that says what kind of item this is (`struct`, `trait`, ...).
fn item_keyword_span(item: &Item) -> Span {
    match item {
        Item::Struct(i) => i.struct_token.span,
        Item::Enum(i) => i.enum_token.span,
        Item::Union(i) => i.union_token.span,
        Item::Trait(i) => i.trait_token.span,
        Item::Impl(i) => i.impl_token.span,
        Item::Mod(i) => i.mod_token.span,
        Item::Const(i) => i.const_token.span,
        Item::Static(i) => i.static_token.span,
        Item::Type(i) => i.type_token.span,
        Item::Use(i) => i.use_token.span,
        Item::ExternCrate(i) => i.extern_token.span,
        Item::ForeignMod(i) => i.abi.extern_token.span,
        Item::Macro(i) => i.mac.path.span(),
        other => other.span(),
    }
}

/// Removes every parameter typed as a nursery handle (used for fallback items).
pub(crate) fn remove_nursery_params(sig: &mut Signature) {
    sig.inputs = std::mem::take(&mut sig.inputs)
        .into_iter()
        .filter(|arg| match arg {
            FnArg::Typed(pat) => !is_nursery_type(strip_reference(&pat.ty)),
            FnArg::Receiver(_) => true,
        })
        .collect();
}

/// `&Nursery` / `&mut Nursery` → `Nursery`; anything else unchanged.
fn strip_reference(ty: &Type) -> &Type {
    match ty {
        Type::Reference(reference) => &reference.elem,
        other => other,
    }
}

/// Checks a `#[nursery]` function's signature, finds its handle and removes the handle (and
/// any other nursery-typed parameter) from the signature.
fn check_fn_signature(
    sig: &mut Signature,
    options: &NurseryOptions,
    errors: &mut Errors,
) -> Option<Handle> {
    if let Some(constness) = sig.constness.take() {
        // Taken out, so the fallback item is not a `const async fn` (a second error).
        errors.push(
            constness.span,
            "a nursery cannot be a `const fn`: it runs children on a runtime; remove `const`",
        );
    }
    let foreign = sig
        .abi
        .as_ref()
        .filter(|abi| abi.name.as_ref().is_none_or(|name| name.value() != "Rust"));
    if let Some(abi) = foreign {
        let written = match &abi.name {
            Some(name) => format!("extern {}", name.to_token_stream()),
            None => "extern".to_string(),
        };
        errors.push(
            abi.span(),
            format_args!(
                "a nursery cannot be `{written}`: an `async fn` returns a future, which no \
                 foreign caller can poll; remove `{written}` (to export it, write a plain \
                 `{written} fn` that runs it with `trellis::run`)"
            ),
        );
        // Taken out, so the fallback item is not an `extern` fn returning a future (a
        // second, FFI-safety warning).
        sig.abi = None;
    }
    if sig.asyncness.is_none() {
        errors.push(
            sig.fn_token.span,
            format_args!(
                "`#[nursery]` needs an `async fn`: write `async fn {}`",
                sig.ident
            ),
        );
    }
    let mut handle: Option<Handle> = None;
    let mut first_typed = true;
    let mut first_param_name: Option<String> = None;
    let mut failed = false;
    for arg in &sig.inputs {
        let FnArg::Typed(param) = arg else { continue };
        let named_in_attribute = matches!(
            (&*param.pat, &options.name),
            (Pat::Ident(p), Some(name)) if p.ident == *name
        );
        // A parameter under `#[cfg]` may not exist: it does not take the first place (the
        // handle is removed from the signature, so where it stands changes nothing).
        let cfg_gated = param.attrs.iter().any(|attr| attr.path().is_ident("cfg"));
        let was_first = if cfg_gated {
            first_typed
        } else {
            std::mem::replace(&mut first_typed, false)
        };
        if first_param_name.is_none() {
            first_param_name = Some(param.pat.to_token_stream().to_string());
        }
        let by_reference = match &*param.ty {
            Type::Reference(r) if is_nursery_type(&r.elem) || named_in_attribute => Some(r),
            _ => None,
        };
        if let Some(reference) = by_reference {
            errors.push(
                reference.and_token.span,
                format_args!(
                    "take the nursery handle by value: write `{}: {}`",
                    param.pat.to_token_stream(),
                    type_text(&reference.elem)
                ),
            );
            failed = true;
            continue;
        }
        if !is_nursery_type(&param.ty) && !named_in_attribute {
            continue;
        }
        let ident = match &*param.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p,
            other => {
                errors.push(
                    other.span(),
                    "name the nursery handle with a plain identifier: write `n: Nursery`, \
                     not a pattern",
                );
                failed = true;
                continue;
            }
        };
        if let Some(first) = &handle {
            errors.push(
                param.span(),
                format_args!(
                    "a function takes one nursery handle and `{}` is already it: remove this \
                     parameter (open an inner nursery with `trellis::open_nursery!` if you need \
                     a second one)",
                    first.ident
                ),
            );
            failed = true;
            continue;
        }
        if let Some(name) = options.name.as_ref().filter(|name| **name != ident.ident) {
            errors.push(
                ident.ident.span(),
                format_args!(
                    "the attribute names the nursery handle `{name}` but this parameter `{}: \
                     {}` is typed as a handle too: keep one of them (if this `Nursery` is a \
                     type of your own, not trellis's, import it under another name, e.g. \
                     `use my::Nursery as MyNursery`)",
                    ident.ident,
                    type_text(&param.ty),
                ),
            );
            failed = true;
            continue;
        }
        if !was_first {
            errors.push(
                param.span(),
                format_args!(
                    "the nursery handle goes first in the parameter list (after `self`): move \
                     `{}: {}` before `{}`",
                    ident.ident,
                    type_text(&param.ty),
                    first_param_name.as_deref().unwrap_or_default(),
                ),
            );
            failed = true;
            continue;
        }
        if let Some(error) = named_brand_lifetime(&param.ty) {
            errors.push_error(error);
            failed = true;
            continue;
        }
        handle = Some(Handle {
            ident: ident.ident.clone(),
            mutability: ident.mutability,
            ty: Some(param.ty.clone()),
        });
    }
    // Remove the handle: by name when the attribute gave one, by type otherwise.
    let handle_name = handle.as_ref().map(|h| h.ident.clone());
    sig.inputs = std::mem::take(&mut sig.inputs)
        .into_iter()
        .filter(|arg| match arg {
            FnArg::Receiver(_) => true,
            FnArg::Typed(param) => {
                let is_handle = matches!(
                    (&*param.pat, &handle_name),
                    (Pat::Ident(p), Some(name)) if p.ident == *name
                );
                !is_handle && !is_nursery_type(strip_reference(&param.ty))
            }
        })
        .collect();
    if handle.is_none() && !failed {
        match &options.name {
            Some(name) => {
                handle = Some(Handle {
                    ident: name.clone(),
                    mutability: None,
                    ty: None,
                });
            }
            None => match first_typed_param(sig) {
                // `n: Rc<u32>`, `n: MyNursery`: a handle under another type, or an alias.
                Some((name, ty)) if name == "n" || name == "nursery" => errors.push(
                    ty.span(),
                    format_args!(
                        "`{name}: {}` is not a nursery handle: write `{name}: Nursery` \
                         (`trellis::Nursery`); if this type names it (an alias, a renamed \
                         import), say so with `#[nursery({name})]`",
                        type_text(ty),
                    ),
                ),
                _ => errors.push(
                    sig.paren_token.span.join(),
                    format_args!(
                        "`#[nursery]` needs the nursery handle: add a first parameter \
                         `n: Nursery` to `{}`, or name the handle with `#[nursery(n)]`",
                        sig.ident
                    ),
                ),
            },
        }
    }
    handle
}

/// The error for a handle type whose first lifetime is named (`Nursery<'a, 'b, E>`): that
/// lifetime is the nursery's own, chosen anew for each nursery, so no lifetime of the
/// function can be it (rustc would say "implementation of `AsyncFnOnce` is not general
/// enough", or that `'a` is undeclared). The second one, what children may borrow, may be
/// named.
pub(crate) fn named_brand_lifetime(ty: &Type) -> Option<syn::Error> {
    let segment = last_segment(ty).filter(|segment| segment.ident == "Nursery")?;
    let syn::PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    let first = args.args.iter().find_map(|arg| match arg {
        syn::GenericArgument::Lifetime(lifetime) => Some(lifetime),
        _ => None,
    })?;
    (first.ident != "_").then(|| {
        syn::Error::new(
            first.span(),
            format_args!(
                "the handle's first lifetime is its nursery's own, chosen anew for each \
                 nursery, so `{first}` cannot be it: write `'_` (`Nursery<'_, '_, E>`), or \
                 leave the lifetimes out (`Nursery`, `Nursery<E>`)"
            ),
        )
    })
}

/// Rejects `map_err` on a function returning `()` or `!`, whose children cannot fail. (On
/// any other type but a `Result` it is the type checker's: the type may be an alias of one.)
fn check_map_err(sig: &Signature, options: &NurseryOptions, errors: &mut Errors) {
    let Some(map_err) = &options.map_err else {
        return;
    };
    if matches!(Output::of(&sig.output), Output::Unit | Output::Never) {
        errors.push(
            map_err.span(),
            format_args!(
                "`map_err` is for a `#[nursery]` fn returning a `Result`; `{}` returns {}, so \
                 its children cannot fail and there is no error to map: remove `map_err`, or \
                 return `Result<T, E>`",
                sig.ident,
                if is_never_output(&sig.output) {
                    "`!`"
                } else {
                    "`()`"
                },
            ),
        );
    }
}

/// Whether the signature's return type is `!`.
fn is_never_output(output: &ReturnType) -> bool {
    matches!(output, ReturnType::Type(_, ty) if is_never(ty))
}

/// The first parameter after `self`, as its name and type, when its pattern is a name.
fn first_typed_param(sig: &Signature) -> Option<(String, &Type)> {
    sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Typed(param) => match &*param.pat {
            Pat::Ident(p) => Some((p.ident.to_string(), &*param.ty)),
            _ => None,
        },
        FnArg::Receiver(_) => None,
    })
}

/// Rejects the escapes of the handle the macro can see, with one error at the offending
/// token: returning the handle by name (`return n;`, `n` as the tail expression, and the same
/// inside `Ok(...)` / `Some(...)`), and the shapes `escape.rs` finds (a child using the
/// handle, the handle stored outside the body, sent to a thread or put in a `'static` box).
/// The type system rejects all of these too, but with lifetime errors about an invisible
/// closure. `outer` are the variables declared outside the body that the check knows about
/// (a `#[nursery]` function's other parameters).
pub(crate) fn check_escape(
    block: &Block,
    handle: &Ident,
    outer: &[crate::escape::OuterParam],
    errors: &mut Errors,
) {
    let mut returns = ReturnFinder {
        handle,
        found: Vec::new(),
    };
    // This check does not follow scopes: where the name may mean something else
    // (`let n = items.len(); n`), it is left to the type checker.
    if !crate::escape::name_may_be_rebound(block, handle) {
        returns.visit_block(block);
        let tail = match block.stmts.last() {
            Some(Stmt::Expr(tail, None)) => names_handle(tail, handle),
            _ => None,
        };
        if let Some(span) = tail {
            returns.found.push(span);
        }
    }
    if returns.found.is_empty() {
        if let Some(escape) = crate::escape::find_escape(block, handle, outer) {
            errors.push(escape.span, escape.message);
        }
    }
    for span in returns.found {
        errors.push(
            span,
            format_args!(
                "the nursery handle `{handle}` escapes its nursery: it is only valid inside \
                 this body; return a value computed with it, or hand work to the nursery with \
                 `{handle}.spawn(...)`"
            ),
        );
    }
}

/// The variables a `#[nursery]` function's body sees from outside: its other parameters.
pub(crate) fn outer_params(sig: &Signature) -> Vec<crate::escape::OuterParam> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(param) => match &*param.pat {
                Pat::Ident(p) => Some(crate::escape::OuterParam {
                    ident: p.ident.clone(),
                    holds_handles: mentions_type_named(&param.ty, "Nursery"),
                }),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// Whether a type names `name` anywhere (`&mut Vec<Nursery<..>>` names `Nursery`).
fn mentions_type_named(ty: &Type, name: &str) -> bool {
    struct Finder<'a>(&'a str, bool);
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_path_segment(&mut self, segment: &'ast syn::PathSegment) {
            self.1 |= segment.ident == self.0;
            syn::visit::visit_path_segment(self, segment);
        }
    }
    let mut finder = Finder(name, false);
    finder.visit_type(ty);
    finder.1
}

/// `Some(span)` when `expr` is the handle itself, or `Ok(handle)` / `Some(handle)`.
fn names_handle(expr: &Expr, handle: &Ident) -> Option<Span> {
    match expr {
        Expr::Path(path) if path.qself.is_none() && path.path.is_ident(handle) => {
            Some(path.path.span())
        }
        Expr::Paren(paren) => names_handle(&paren.expr, handle),
        Expr::Call(call) if call.args.len() == 1 => match &*call.func {
            Expr::Path(f) if ["Ok", "Some"].iter().any(|w| f.path.is_ident(w)) => {
                names_handle(&call.args[0], handle)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Finds `return handle` in the body itself, not in nested closures, async blocks or items
/// (there `return` leaves something else).
struct ReturnFinder<'a> {
    /// The handle's name.
    handle: &'a Ident,
    /// Where it is returned.
    found: Vec<Span>,
}

impl<'ast> Visit<'ast> for ReturnFinder<'_> {
    fn visit_expr_return(&mut self, ret: &'ast syn::ExprReturn) {
        if let Some(expr) = &ret.expr {
            if let Some(span) = names_handle(expr, self.handle) {
                self.found.push(span);
            }
            self.visit_expr(expr);
        }
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_item(&mut self, _: &'ast Item) {}
}

/// The checked input of `open_nursery! { |n| body }`.
pub(crate) struct BlockInput {
    /// `crate = path;` before the closure.
    pub(crate) krate: Option<Path>,
    /// `move |n| ...`.
    pub(crate) movability: Option<Token![move]>,
    /// The handle.
    pub(crate) handle: Handle,
    /// `|n| -> Result<T, E> { ... }`.
    pub(crate) output: Option<Box<Type>>,
    /// The body's statements.
    pub(crate) body: Vec<Stmt>,
}

impl BlockInput {
    /// Reads `[crate = path;] [async] [move] |n[: Nursery]| [-> Type] statements`.
    pub(crate) fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut krate = None;
        if input.peek(Token![crate]) && input.peek2(Token![=]) {
            input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            krate = Some(Path::parse_mod_style(input)?);
            input.parse::<Token![;]>()?;
        }
        input.parse::<Option<Token![async]>>()?;
        let movability = input.parse::<Option<Token![move]>>()?;
        if !input.peek(Token![|]) {
            return Err(input.error(
                "`open_nursery!` takes a closure naming the handle: write \
                 `open_nursery! { |n| ... }`",
            ));
        }
        input.parse::<Token![|]>()?;
        let pat = Pat::parse_single(input)?;
        let ty = if input.peek(Token![:]) {
            input.parse::<Token![:]>()?;
            Some(Box::new(input.parse::<Type>()?))
        } else {
            None
        };
        // `|n,|` is a closure of one parameter, as in Rust; `|n, m|` is not.
        if input.peek(Token![,]) && input.peek2(Token![|]) {
            input.parse::<Token![,]>()?;
        }
        if input.peek(Token![,]) {
            return Err(input.error(
                "the nursery body takes exactly one parameter, the handle: write \
                 `open_nursery! { |n| ... }`",
            ));
        }
        input.parse::<Token![|]>()?;
        let ident = match pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p,
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "name the nursery handle with a plain identifier: write \
                     `open_nursery! { |n| ... }`",
                ));
            }
        };
        if let Some(error) = ty.as_deref().and_then(named_brand_lifetime) {
            return Err(error);
        }
        if let Some(Type::Reference(reference)) = ty.as_deref() {
            return Err(syn::Error::new(
                reference.and_token.span,
                "take the nursery handle by value: write `|n| ...` or `|n: Nursery| ...`",
            ));
        }
        let output = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(Box::new(input.parse::<Type>()?))
        } else {
            None
        };
        let body = Block::parse_within(input)?;
        Ok(BlockInput {
            krate,
            movability,
            handle: Handle {
                ident: ident.ident,
                mutability: ident.mutability,
                ty,
            },
            output,
            body,
        })
    }
}

/// A `#[trellis::main]` / `#[trellis::test]` function (checked; fallback-ready on errors).
pub(crate) struct EntryInput {
    /// The function as written.
    pub(crate) func: ItemFn,
}

impl EntryInput {
    /// Reads and checks the item under an entry-point attribute.
    pub(crate) fn parse(
        item: TokenStream,
        kind: EntryKind,
        errors: &mut Errors,
    ) -> Result<Self, TokenStream> {
        let func = match syn::parse2::<ItemFn>(item.clone()) {
            Ok(func) => func,
            Err(_) => {
                let span = item
                    .clone()
                    .into_iter()
                    .next()
                    .map_or_else(Span::call_site, |t| t.span());
                errors.push(
                    span,
                    format_args!(
                        "`{}` goes on an `async fn`, e.g. `{} async fn {}() {{ ... }}`",
                        kind.attribute(),
                        kind.attribute(),
                        if kind == EntryKind::Main {
                            "main"
                        } else {
                            "it_works"
                        },
                    ),
                );
                return Err(item);
            }
        };
        let sig = &func.sig;
        if sig.asyncness.is_none() {
            errors.push(
                sig.fn_token.span,
                format_args!(
                    "`{}` needs an `async fn`: write `async fn {}`",
                    kind.attribute(),
                    sig.ident
                ),
            );
        }
        // `#[trellis::main] #[nursery] async fn main(n: Nursery)`: the attributes expand from
        // the top, so this one sees the handle `#[nursery]` would have removed.
        let nursery_below = func.attrs.iter().find(|attr| is_nursery_attribute(attr));
        if let Some(attr) = nursery_below {
            let name = attr
                .path()
                .segments
                .last()
                .map(|segment| segment.ident.span());
            errors.push(
                name.unwrap_or_else(|| attr.span()),
                format_args!(
                    "put `#[nursery]` above `{0}`: attributes expand from the top, and `{0}` \
                     takes a function without parameters, which `#[nursery]` makes by taking \
                     the handle out (`#[nursery] {0} async fn {1}(n: Nursery)`)",
                    kind.attribute(),
                    sig.ident,
                ),
            );
        }
        let handle_param = sig.inputs.iter().find(
            |arg| matches!(arg, FnArg::Typed(param) if is_nursery_type(strip_reference(&param.ty))),
        );
        if let Some(param) = handle_param.filter(|_| nursery_below.is_none()) {
            // `#[trellis::main] async fn main(n: Nursery)`: the user wants a nursery.
            errors.push(
                param.span(),
                format_args!(
                    "`{0}` functions take no arguments; to make `{1}` a nursery, put \
                     `#[nursery]` above `{0}`, which takes the handle out: \
                     `#[nursery] {0} async fn {1}(n: Nursery)`",
                    kind.attribute(),
                    sig.ident,
                ),
            );
        } else if let Some(first) = sig.inputs.first().filter(|_| nursery_below.is_none()) {
            errors.push(
                first.span(),
                format_args!(
                    "`{}` functions take no arguments: remove them{}",
                    kind.attribute(),
                    if kind == EntryKind::Main {
                        " and read `std::env::args()` inside"
                    } else {
                        ""
                    }
                ),
            );
        }
        if !sig.generics.params.is_empty() {
            errors.push(
                sig.generics.params.span(),
                format_args!("`{}` functions cannot be generic", kind.attribute()),
            );
        }
        if let ReturnType::Type(_, ty) = &sig.output {
            if kind == EntryKind::Test && is_never(ty) {
                // The harness accepts `fn() -> !` but warns that its call of the test is
                // unreachable (a warning no attribute on the function silences), and
                // rejects it with `#[should_panic]`: such a test could only fail or hang.
                errors.push(
                    ty.span(),
                    "a `#[trellis::test]` function cannot return `!`: a test that never \
                     returns can only fail or hang; return `()` (remove `-> !`), and add \
                     `#[should_panic]` if the test is meant to end in a panic",
                );
            }
        }
        if kind == EntryKind::Test {
            for attr in &func.attrs {
                if attr.path().is_ident("test") {
                    errors.push(
                        attr.span(),
                        "remove `#[test]`: `#[trellis::test]` already makes this a test",
                    );
                }
            }
        }
        Ok(EntryInput { func })
    }
}

/// Whether `attr` is `#[nursery]` (however the path is written: `trellis::nursery`).
pub(crate) fn is_nursery_attribute(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "nursery")
}

/// Reads the output type of a `#[nursery]` function.
pub(crate) fn output_of(sig: &Signature) -> Output {
    Output::of(&sig.output)
}
