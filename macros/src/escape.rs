//! Finding the common escapes of a nursery handle before the borrow checker does.
//!
//! The type system rejects every escape (the handle's brand `'s` is chosen anew for each
//! nursery and cannot be named outside it), but it says so with lifetime errors about an
//! invisible closure. This pass finds the shapes a user writes first and reports one error
//! at the offending token that says what to write instead:
//!
//! - **a child uses the handle**: the handle named inside the `async` block given to
//!   `spawn` / `spawn_named` / `start_soon`, or inside the closure given to `spawn_with` / `start`, of the
//!   same handle (E0373, E0505, E0521 otherwise);
//! - **the handle stored outside**: assigned to a place whose root variable is declared
//!   outside the body (`*slot.borrow_mut() = Some(n)`, `stash = Some(n)`), or passed to a
//!   collection method (`out.push(n)`) of a parameter whose type names `Nursery`
//!   ("lifetime may not live long enough" otherwise);
//! - **the handle sent to another thread or task**: named inside the closure or future given
//!   to `std::thread::spawn`, `std::thread::Builder::spawn`, `tokio::spawn` and friends, or
//!   put into a `'static` box ("cannot be sent between threads safely" otherwise). Written
//!   as a bare `thread::spawn`, the path may be a module of the user's crate, so the
//!   compiler's E0277 is left to speak.
//!
//! **It must never reject code that compiles.** So it only reports a shape whose rejection
//! follows from the handle's type alone, and stays silent whenever name resolution is not
//! certain: names are resolved with the body's own scopes (a `let`, closure parameter,
//! `match` arm, `for` or `if let` pattern that rebinds the name shadows the handle), a name
//! that an item or a statement macro in the body could define turns the pass off for that
//! name, and nothing inside a nested item or a macro call is looked at (but the arguments
//! of std's formatting and assertion macros and `vec!`, which are expressions evaluated in
//! place, and the variables a format string names). When it is silent,
//! the type checker still rejects the escape. `integration/tests/escape_table.rs` compiles
//! generated bodies to check the first promise.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Block, Expr, Ident, Item, Pat, Stmt, Token, Type};

/// A variable declared outside the body (a `#[nursery]` function's other parameters).
pub(crate) struct OuterParam {
    /// Its name.
    pub(crate) ident: Ident,
    /// Whether its written type names `Nursery` (`out: &mut Vec<Nursery<..>>`): a collection
    /// method that takes the handle then certainly stores it.
    pub(crate) holds_handles: bool,
}

/// One escape found, ready to report.
pub(crate) struct Escape {
    /// The offending token: the handle's name where it escapes.
    pub(crate) span: Span,
    /// What to tell the user.
    pub(crate) message: String,
}

/// Whether the name `handle` may mean something else somewhere in `block`: a pattern
/// rebinds it (`let n = ..`, `for &n in ..`, a closure parameter, a `match` arm), or an
/// item, a glob import or a macro may define it. A check that does not follow scopes
/// (the returned-handle one) stays silent then, so as never to reject code that compiles.
pub(crate) fn name_may_be_rebound(block: &Block, handle: &Ident) -> bool {
    struct Binds<'a>(&'a Ident, bool);
    impl<'ast> Visit<'ast> for Binds<'_> {
        fn visit_pat(&mut self, pat: &'ast Pat) {
            self.1 |= bound_names(pat).iter().any(|name| name == self.0);
        }
    }
    let mut names = NameCensus::default();
    names.visit_block(block);
    if names.glob_use || names.unsure.contains(&handle.to_string()) {
        return true;
    }
    let mut binds = Binds(handle, false);
    binds.visit_block(block);
    binds.1
}

/// Finds the first escape of `handle` in `block` (in source order), if any.
pub(crate) fn find_escape(block: &Block, handle: &Ident, outer: &[OuterParam]) -> Option<Escape> {
    let mut names = NameCensus::default();
    names.visit_block(block);
    if names.glob_use || names.unsure.contains(&handle.to_string()) {
        return None;
    }
    let mut finder = Finder {
        scopes: vec![vec![(handle.to_string(), Binding::Handle(0))]],
        next_id: 1,
        contexts: Vec::new(),
        outer,
        unsure: names.unsure,
        found: None,
    };
    finder.visit_block(block);
    finder.found
}

/// What a name in scope is bound to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// A nursery handle (the body's own or one given to a `spawn_with` / `start` child, or to
    /// an inner `trellis::nursery` body), or a reference to or move of one (`let r = &n;`).
    /// The number tells handles apart: a child may use another nursery's handle.
    Handle(u32),
    /// Anything else declared in the body.
    Local,
}

/// Where the expression being visited ends up, innermost last.
#[derive(Clone)]
enum Context {
    /// Inside the future or closure given to `spawn` & co. of handle `id`, with the
    /// receiver's name as written (for the message).
    Child { id: u32, receiver: String },
    /// Inside a closure or future given to a thread or another runtime; `what` names it.
    Thread { what: String },
    /// The value stored into `place` (declared outside the body), or put into a `'static`
    /// box (`place` is `None`). A mention of the handle in structural position (the value
    /// itself, `Some(n)`, `(n, x)`, `&n`) stores it.
    Sink { place: Option<String> },
    /// Inside a closure or `async` block that is being stored: any mention is captured.
    SinkCapture { place: Option<String> },
    /// An expression that computes a new value (a call, a method, an operator): what it
    /// reads is not stored as such.
    Opaque,
}

/// Names the pass cannot resolve: those an item in the body declares (items are visible in
/// their whole block, before their declaration too) and those a statement macro mentions
/// (it may expand to a `let` or an item).
#[derive(Default)]
struct NameCensus {
    /// The names to leave alone.
    unsure: HashSet<String>,
    /// A `use path::*;` in the body: any name may be an item.
    glob_use: bool,
}

/// Macros known to define no names, whose arguments are expressions.
const PLAIN_MACROS: &[&str] = &[
    "println",
    "print",
    "eprintln",
    "eprint",
    "format",
    "format_args",
    "write",
    "writeln",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "panic",
    "todo",
    "unimplemented",
    "unreachable",
    "dbg",
    "vec",
    "matches",
    "open_nursery",
];

/// Whether the macro is one of [`PLAIN_MACROS`] (written bare or through `std`, `core`,
/// `alloc` or `trellis`).
fn is_plain_macro(path: &syn::Path) -> bool {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [name] => PLAIN_MACROS.contains(&name.as_str()),
        [krate, name] => {
            ["std", "core", "alloc", "trellis"].contains(&krate.as_str())
                && PLAIN_MACROS.contains(&name.as_str())
        }
        _ => false,
    }
}

/// For std's macros whose arguments are expressions: `Some(position of the format string)`
/// (`Some(None)` for `vec!`, which has none); `None` for any other macro.
fn macro_arguments(path: &syn::Path) -> Option<Option<usize>> {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let name = match segments.as_slice() {
        [name] => name.as_str(),
        [krate, name] if ["std", "core", "alloc"].contains(&krate.as_str()) => name.as_str(),
        _ => return None,
    };
    Some(match name {
        "println" | "print" | "eprintln" | "eprint" | "format" | "format_args" | "panic"
        | "todo" | "unimplemented" | "unreachable" => Some(0),
        "write" | "writeln" | "assert" | "debug_assert" => Some(1),
        "assert_eq" | "assert_ne" | "debug_assert_eq" | "debug_assert_ne" => Some(2),
        "dbg" | "vec" => None,
        _ => return None,
    })
}

/// Every identifier in a token stream.
fn idents_in(tokens: &TokenStream, out: &mut HashSet<String>) {
    for token in tokens.clone() {
        match token {
            TokenTree::Ident(ident) => {
                out.insert(ident.to_string());
            }
            TokenTree::Group(group) => idents_in(&group.stream(), out),
            _ => {}
        }
    }
}

impl<'ast> Visit<'ast> for NameCensus {
    fn visit_item(&mut self, item: &'ast Item) {
        // Not descending: names inside an item are the item's own.
        match item {
            Item::Use(use_item) => self.visit_use_tree(&use_item.tree),
            Item::Macro(mac) => {
                // `macro_rules!` or an item macro: it may define any name it mentions.
                idents_in(&mac.mac.tokens, &mut self.unsure);
                if let Some(ident) = &mac.ident {
                    self.unsure.insert(ident.to_string());
                }
            }
            Item::Verbatim(tokens) => idents_in(tokens, &mut self.unsure),
            other => {
                let mut idents = HashSet::new();
                // The item's own name is its first identifier after the keyword; taking
                // every identifier of its header would be as safe, but items are rare in a
                // body, so take all of them.
                idents_in(&quote::ToTokens::to_token_stream(other), &mut idents);
                self.unsure.extend(idents);
            }
        }
    }
    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => self.visit_use_tree(&path.tree),
            syn::UseTree::Name(name) => {
                self.unsure.insert(name.ident.to_string());
            }
            syn::UseTree::Rename(rename) => {
                self.unsure.insert(rename.rename.to_string());
            }
            syn::UseTree::Glob(_) => self.glob_use = true,
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.visit_use_tree(tree);
                }
            }
        }
    }
    fn visit_stmt_macro(&mut self, mac: &'ast syn::StmtMacro) {
        if !is_plain_macro(&mac.mac.path) {
            idents_in(&mac.mac.tokens, &mut self.unsure);
        }
    }
    fn visit_stmt(&mut self, stmt: &'ast Stmt) {
        // `foo!(..)` as a block's tail is an expression statement but may expand to items.
        if let Stmt::Expr(Expr::Macro(mac), _) = stmt {
            if !is_plain_macro(&mac.mac.path) {
                idents_in(&mac.mac.tokens, &mut self.unsure);
            }
            return;
        }
        syn::visit::visit_stmt(self, stmt);
    }
}

/// Collects the names a pattern binds (every identifier pattern, also a constant's name:
/// treating it as a binding only makes the pass quieter).
fn bound_names(pat: &Pat) -> Vec<Ident> {
    struct Collect(Vec<Ident>);
    impl<'ast> Visit<'ast> for Collect {
        fn visit_pat_ident(&mut self, pat: &'ast syn::PatIdent) {
            self.0.push(pat.ident.clone());
            syn::visit::visit_pat_ident(self, pat);
        }
        fn visit_expr_macro(&mut self, mac: &'ast syn::ExprMacro) {
            let mut names = HashSet::new();
            idents_in(&mac.mac.tokens, &mut names);
            self.0.extend(names.into_iter().map(|n| ident_named(&n)));
        }
        // Paths inside patterns (`Some`, `E::A`), types and expressions (ranges) bind
        // nothing.
        fn visit_expr(&mut self, _: &'ast Expr) {}
        fn visit_type(&mut self, _: &'ast Type) {}
    }
    let mut collect = Collect(Vec::new());
    collect.visit_pat(pat);
    collect.0
}

/// The identifier `name` as `Ident::to_string` wrote it: `r#type` is a raw identifier,
/// which `Ident::new` refuses (a panic of the macro, found by a case with `r#type` in a
/// pattern macro).
fn ident_named(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}

/// `e` without parentheses and invisible groups.
fn peel(mut e: &Expr) -> &Expr {
    loop {
        match e {
            Expr::Paren(p) => e = &p.expr,
            Expr::Group(g) => e = &g.expr,
            _ => return e,
        }
    }
}

/// The single identifier of a path expression (`n`, `self`), if it is one.
fn path_ident(e: &Expr) -> Option<&Ident> {
    match peel(e) {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p.path.get_ident(),
        _ => None,
    }
}

/// The segments of a call's function path, as strings.
fn call_path(func: &Expr) -> Option<Vec<String>> {
    match peel(func) {
        Expr::Path(p) if p.qself.is_none() => Some(
            p.path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect(),
        ),
        _ => None,
    }
}

/// Calls that build a value holding their argument (so storing the result stores it).
fn is_wrapping_constructor(path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["Some" | "Ok" | "Err"] => true,
        [.., "Option", "Some"] | [.., "Result", "Ok" | "Err"] => true,
        [.., ty, "new"] => ["Box", "Rc", "Arc", "RefCell", "Cell", "Mutex", "RwLock"].contains(ty),
        _ => false,
    }
}

/// Functions that run their argument on another thread or in another runtime's task: the
/// name shown to the user, when `path` is one.
fn thread_spawner(path: &[String]) -> Option<String> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let known = match path.as_slice() {
        // Not `thread::scope`: its closure runs on this thread. Not a bare `thread::spawn`
        // either: `thread` may be a module of the user's crate whose `spawn` runs the closure
        // here, and a `use std::thread;` outside the function is out of sight. The compiler
        // still rejects std's (E0277, "cannot be sent between threads safely").
        ["std", "thread", "spawn"] => true,
        ["tokio", "spawn"] => true,
        ["tokio", "task", "spawn" | "spawn_local" | "spawn_blocking"] => true,
        [
            "async_std",
            "task",
            "spawn" | "spawn_local" | "spawn_blocking",
        ] => true,
        ["smol", "spawn"] => true,
        _ => false,
    };
    known.then(|| path.join("::"))
}

/// Whether a written type is a box whose object has no lifetime but `'static`
/// (`Box<dyn Any>`, `Box<dyn Fn() + Send + 'static>`): a `let` of that type is `'static`.
fn is_static_box(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    if last.ident != "Box" {
        return false;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    let Some(syn::GenericArgument::Type(Type::TraitObject(object))) = args.args.first() else {
        return false;
    };
    object.bounds.iter().all(|bound| match bound {
        syn::TypeParamBound::Lifetime(lifetime) => lifetime.ident == "static",
        // A trait with a lifetime parameter may bound itself by it (`trait Holder<'a>: 'a`),
        // and then `dyn Holder<'a>` defaults to `'a`, not `'static`: the box may hold the
        // handle (found by `Box<dyn Holder<'_>>`, which compiles).
        syn::TypeParamBound::Trait(bound) => !bound.path.segments.iter().any(|segment| {
            matches!(
                &segment.arguments,
                syn::PathArguments::AngleBracketed(args) if args.args.iter().any(|arg| {
                    matches!(arg, syn::GenericArgument::Lifetime(l) if l.ident != "static")
                })
            )
        }),
        _ => true,
    })
}

/// Collection methods that keep their argument.
const STORING_METHODS: &[&str] = &[
    "push",
    "push_back",
    "push_front",
    "insert",
    "extend",
    "append",
    "set",
    "replace",
    "get_or_insert",
    "send",
];

/// Methods that lead from a variable to a place inside it (`slot.borrow_mut()`,
/// `m.lock().unwrap()`), through which an assignment still writes into the variable.
const PLACE_METHODS: &[&str] = &[
    "borrow_mut",
    "get_mut",
    "as_mut",
    "deref_mut",
    "lock",
    "write",
    "unwrap",
    "expect",
    "as_deref_mut",
];

/// The root variable of a place expression (`*slot.borrow_mut()` → `slot`).
fn place_root(e: &Expr) -> Option<&Ident> {
    match peel(e) {
        Expr::Path(_) => path_ident(e),
        Expr::Field(field) => place_root(&field.base),
        Expr::Index(index) => place_root(&index.expr),
        Expr::Unary(unary) if matches!(unary.op, syn::UnOp::Deref(_)) => place_root(&unary.expr),
        Expr::MethodCall(call) if PLACE_METHODS.contains(&call.method.to_string().as_str()) => {
            place_root(&call.receiver)
        }
        _ => None,
    }
}

/// The pass itself: resolves names with the body's scopes and watches where handles go.
struct Finder<'a> {
    /// The names bound in the body, one frame per block / closure / arm.
    scopes: Vec<Vec<(String, Binding)>>,
    /// The next handle number.
    next_id: u32,
    /// Where the current expression ends up.
    contexts: Vec<Context>,
    /// The variables declared outside the body that the pass knows more about.
    outer: &'a [OuterParam],
    /// Names the pass leaves alone.
    unsure: HashSet<String>,
    /// The first escape.
    found: Option<Escape>,
}

impl Finder<'_> {
    fn lookup(&self, name: &str) -> Option<Binding> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|frame| frame.iter().rev())
            .find(|(bound, _)| bound == name)
            .map(|(_, binding)| *binding)
    }

    fn bind(&mut self, ident: &Ident, binding: Binding) {
        if let Some(frame) = self.scopes.last_mut() {
            frame.push((ident.to_string(), binding));
        }
    }

    fn bind_pat(&mut self, pat: &Pat) {
        for ident in bound_names(pat) {
            self.bind(&ident, Binding::Local);
        }
    }

    fn fresh_handle(&mut self) -> Binding {
        self.next_id += 1;
        Binding::Handle(self.next_id)
    }

    /// Runs `f` in a new scope frame.
    fn scoped(&mut self, f: impl FnOnce(&mut Self)) {
        self.scopes.push(Vec::new());
        f(self);
        self.scopes.pop();
    }

    /// Runs `f` with `context` pushed.
    fn within(&mut self, context: Context, f: impl FnOnce(&mut Self)) {
        self.contexts.push(context);
        f(self);
        self.contexts.pop();
    }

    /// The handle an expression is, if it is one (`n`, `&n`, `(n)`, an alias).
    fn handle_of(&self, e: &Expr) -> Option<u32> {
        let e = match peel(e) {
            Expr::Reference(r) => &*r.expr,
            other => other,
        };
        match self.lookup(&path_ident(e)?.to_string()) {
            Some(Binding::Handle(id)) => Some(id),
            _ => None,
        }
    }

    /// Whether `ident` names a variable declared outside the body (nothing in the body binds
    /// it, and nothing in the body could).
    fn is_outer(&self, ident: &Ident) -> bool {
        let name = ident.to_string();
        self.lookup(&name).is_none() && !self.unsure.contains(&name)
    }

    /// [`is_static_box`], unless the body declares its own `Box`.
    fn is_static_box(&self, ty: &Type) -> bool {
        !self.unsure.contains("Box") && is_static_box(ty)
    }

    fn report(&mut self, span: Span, message: String) {
        if self.found.is_none() {
            self.found = Some(Escape { span, message });
        }
    }

    /// A handle named at `span` as `name`: reports it when where it is means an escape.
    fn mention(&mut self, id: u32, name: &Ident) {
        let mut opaque = false;
        let mut message = None;
        for context in self.contexts.iter().rev() {
            match context {
                Context::Thread { what } => {
                    message = Some(format!(
                        "a nursery belongs to one task on one thread: the handle `{name}` \
                         cannot be used by `{what}`; keep the work that spawns children in \
                         this body, and give other threads plain data (`trellis::to_thread` \
                         runs a closure on a worker thread, `scope.remote()` cancels from one)"
                    ));
                    break;
                }
                Context::Child {
                    id: child_of,
                    receiver,
                } if *child_of == id => {
                    message = Some(format!(
                        "a child cannot use the nursery's handle `{name}`: the child may \
                         outlive the body that owns it; give the child its own with \
                         `{receiver}.spawn_with(async |{name}| ..)`, or spawn from the body"
                    ));
                    break;
                }
                Context::Child { .. } => {}
                Context::SinkCapture { place } => {
                    message = Some(sink_message(name, place.as_deref(), true));
                    break;
                }
                Context::Sink { place } if !opaque => {
                    message = Some(sink_message(name, place.as_deref(), false));
                    break;
                }
                Context::Sink { .. } => {}
                Context::Opaque => opaque = true,
            }
        }
        if let Some(message) = message {
            self.report(name.span(), message);
        }
    }

    /// Whether a value being stored is in a position where a mention stores the handle.
    fn sink_active(&self) -> bool {
        for context in self.contexts.iter().rev() {
            match context {
                Context::Sink { .. } | Context::SinkCapture { .. } => return true,
                Context::Opaque => return false,
                Context::Child { .. } | Context::Thread { .. } => {}
            }
        }
        false
    }

    /// The place a stored value goes, when the sink context is live (for capturing closures).
    fn sink_place(&self) -> Option<Option<String>> {
        for context in self.contexts.iter().rev() {
            match context {
                Context::Sink { place } | Context::SinkCapture { place } => {
                    return Some(place.clone());
                }
                Context::Opaque => return None,
                Context::Child { .. } | Context::Thread { .. } => {}
            }
        }
        None
    }

    /// Visits `e` as an expression whose value is computed, not stored as such.
    fn visit_opaque(&mut self, e: &Expr) {
        if self.sink_active() {
            self.within(Context::Opaque, |this| this.visit_expr(e));
        } else {
            self.visit_expr(e);
        }
    }

    /// Visits a closure's or `async` block's body; `handle_params` binds its first
    /// parameter as a fresh handle (a `spawn_with` / `start` / `trellis::nursery` closure).
    fn visit_closure(&mut self, closure: &syn::ExprClosure, handle_param: bool) {
        self.scoped(|this| {
            for (i, input) in closure.inputs.iter().enumerate() {
                let plain = match input {
                    Pat::Ident(p) if p.subpat.is_none() => Some(&p.ident),
                    Pat::Type(t) => match &*t.pat {
                        Pat::Ident(p) if p.subpat.is_none() => Some(&p.ident),
                        _ => None,
                    },
                    _ => None,
                };
                match plain {
                    Some(ident) if i == 0 && handle_param => {
                        let handle = this.fresh_handle();
                        this.bind(ident, handle);
                    }
                    _ => this.bind_pat(input),
                }
            }
            this.capture_body(|this| this.visit_expr(&closure.body));
        });
    }

    /// Visits the body of something that captures (a closure or `async` block): if it is
    /// being stored, every mention inside is stored with it.
    fn capture_body(&mut self, f: impl FnOnce(&mut Self)) {
        match self.sink_place() {
            Some(place) => self.within(Context::SinkCapture { place }, f),
            None => f(self),
        }
    }

    /// The variables a format string names inline (`"{n:?}"`), as mentions at the string.
    fn visit_format_string(&mut self, format: &syn::LitStr, named: &[String]) {
        let text = format.value();
        let mut chars = text.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c != '{' {
                continue;
            }
            if chars.peek().is_some_and(|&(_, next)| next == '{') {
                chars.next();
                continue;
            }
            let mut name = String::new();
            while let Some(&(_, next)) = chars.peek() {
                if next.is_alphanumeric() || next == '_' {
                    name.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            let ends_name = chars
                .peek()
                .is_some_and(|&(_, next)| next == '}' || next == ':');
            let is_ident = name
                .chars()
                .next()
                .is_some_and(|first| first.is_alphabetic() || first == '_');
            if !ends_name || !is_ident || name == "_" || named.contains(&name) {
                continue;
            }
            let Ok(mut ident) = syn::parse_str::<Ident>(&name) else {
                continue;
            };
            if let Some(Binding::Handle(id)) = self.lookup(&name) {
                ident.set_span(format.span());
                self.mention(id, &ident);
            }
        }
    }

    /// `receiver.method(args)` where the receiver is a handle.
    fn visit_handle_method(&mut self, call: &syn::ExprMethodCall, id: u32) -> bool {
        let method = call.method.to_string();
        let receiver = path_ident(match peel(&call.receiver) {
            Expr::Reference(r) => &r.expr,
            other => other,
        })
        .map_or_else(|| "n".to_string(), ToString::to_string);
        // The future or closure is the last argument (`spawn_named(name, fut)` has two).
        let arity = if method == "spawn_named" { 2 } else { 1 };
        let Some(arg) = call.args.last().filter(|_| call.args.len() == arity) else {
            return false;
        };
        let context = Context::Child { id, receiver };
        match (method.as_str(), peel(arg)) {
            ("spawn_named", Expr::Async(block)) => {
                self.visit_opaque(&call.receiver);
                self.visit_opaque(&call.args[0]);
                self.within(context, |this| {
                    this.scoped(|this| this.visit_block(&block.block));
                });
                true
            }
            ("spawn" | "start_soon", Expr::Async(block)) => {
                self.visit_opaque(&call.receiver);
                self.within(context, |this| {
                    this.scoped(|this| this.visit_block(&block.block));
                });
                true
            }
            ("spawn_with" | "start", Expr::Closure(closure)) => {
                self.visit_opaque(&call.receiver);
                self.within(context, |this| this.visit_closure(closure, true));
                true
            }
            _ => false,
        }
    }
}

/// The message for a handle stored outside the body (`place`) or in a `'static` box.
fn sink_message(name: &Ident, place: Option<&str>, captured: bool) -> String {
    let how = if captured {
        "a closure or future that captures it"
    } else {
        "it"
    };
    match place {
        Some(place) => format!(
            "the nursery handle `{name}` is only valid inside this nursery: storing {how} in \
             `{place}`, which is declared outside the body, would let it outlive the \
             nursery; use the handle inside the body (spawn the work there), or open the \
             nursery where `{place}` is used"
        ),
        None => format!(
            "a nursery belongs to one task on one thread: the handle `{name}` cannot go into \
             a `'static` box (`Box<dyn Trait>` without a lifetime is `'static`), it is only \
             valid inside this nursery; write `Box<dyn Trait + '_>` and keep the box in the \
             body"
        ),
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_block(&mut self, block: &'ast Block) {
        self.scoped(|this| {
            for stmt in &block.stmts {
                this.visit_stmt(stmt);
            }
        });
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        // `let _ = n;` neither moves `n` nor, in a closure or `async` block, captures it:
        // not a use (it compiles in a child).
        if matches!(local.pat, Pat::Wild(_))
            && local
                .init
                .as_ref()
                .is_some_and(|init| init.diverge.is_none() && path_ident(&init.expr).is_some())
        {
            return;
        }
        let annotated = match &local.pat {
            Pat::Type(t) => Some(&*t.ty),
            _ => None,
        };
        if let Some(init) = &local.init {
            let static_box = annotated.is_some_and(|ty| self.is_static_box(ty));
            if static_box {
                self.within(Context::Sink { place: None }, |this| {
                    this.visit_expr(&init.expr);
                });
            } else {
                self.visit_opaque(&init.expr);
            }
            if let Some((_, diverge)) = &init.diverge {
                self.visit_expr(diverge);
            }
            // `let r = &n;` / `let m = n;`: the new name is the same handle.
            let alias = self.handle_of(&init.expr);
            let plain = match &local.pat {
                Pat::Ident(p) if p.subpat.is_none() => Some(&p.ident),
                Pat::Type(t) => match &*t.pat {
                    Pat::Ident(p) if p.subpat.is_none() => Some(&p.ident),
                    _ => None,
                },
                _ => None,
            };
            if let (Some(id), Some(ident)) = (alias, plain) {
                self.bind(ident, Binding::Handle(id));
                return;
            }
        }
        self.bind_pat(&local.pat);
    }

    fn visit_item(&mut self, _: &'ast Item) {}

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Only std's formatting, assertion and `vec!` macros, whose arguments are
        // expressions evaluated in place (a child that prints the handle captures it).
        let Some(format_at) = macro_arguments(&mac.path) else {
            return;
        };
        let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
        let args = match parser.parse2(mac.tokens.clone()) {
            Ok(args) => args.into_iter().collect::<Vec<_>>(),
            Err(_) => {
                // `vec![x; n]`.
                let repeat = |input: ParseStream<'_>| {
                    let value: Expr = input.parse()?;
                    input.parse::<Token![;]>()?;
                    let count: Expr = input.parse()?;
                    Ok(vec![value, count])
                };
                match repeat.parse2(mac.tokens.clone()) {
                    Ok(args) if format_at.is_none() => args,
                    _ => return,
                }
            }
        };
        // Names given as `name = value` are what the format string's `{name}` refers to.
        let named: Vec<String> = args
            .iter()
            .filter_map(|arg| match arg {
                Expr::Assign(named) => path_ident(&named.left).map(ToString::to_string),
                _ => None,
            })
            .collect();
        self.within(Context::Opaque, |this| {
            for (i, arg) in args.iter().enumerate() {
                match arg {
                    // `format!("{x}", x = value)`: `x` names the argument, not a variable.
                    Expr::Assign(named) if path_ident(&named.left).is_some() => {
                        this.visit_expr(&named.right);
                    }
                    Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(format),
                        ..
                    }) if Some(i) == format_at => this.visit_format_string(format, &named),
                    other => this.visit_expr(other),
                }
            }
        });
    }

    fn visit_expr(&mut self, e: &'ast Expr) {
        if self.found.is_some() {
            return;
        }
        match e {
            Expr::Path(_) => {
                if let Some(ident) = path_ident(e) {
                    if let Some(Binding::Handle(id)) = self.lookup(&ident.to_string()) {
                        self.mention(id, ident);
                    }
                }
            }
            Expr::Paren(_) | Expr::Group(_) | Expr::Tuple(_) | Expr::Array(_) => {
                syn::visit::visit_expr(self, e);
            }
            Expr::Reference(r) => self.visit_expr(&r.expr),
            Expr::Struct(s) => {
                for field in &s.fields {
                    self.visit_expr(&field.expr);
                }
                if let Some(rest) = &s.rest {
                    self.visit_opaque(rest);
                }
            }
            Expr::Closure(closure) => self.visit_closure(closure, false),
            Expr::Async(block) => {
                self.capture_body(|this| this.visit_block(&block.block));
            }
            Expr::Cast(cast) if self.is_static_box(&cast.ty) => {
                self.within(Context::Sink { place: None }, |this| {
                    this.visit_expr(&cast.expr);
                });
            }
            Expr::Assign(assign) => {
                self.visit_opaque(&assign.left);
                match place_root(&assign.left).filter(|root| self.is_outer(root)) {
                    Some(root) => {
                        let place = Some(root.to_string());
                        self.within(Context::Sink { place }, |this| {
                            this.visit_expr(&assign.right);
                        });
                    }
                    None => self.visit_opaque(&assign.right),
                }
            }
            Expr::MethodCall(call) => {
                if let Some(id) = self.handle_of(&call.receiver) {
                    if self.visit_handle_method(call, id) {
                        return;
                    }
                }
                let storing = STORING_METHODS.contains(&call.method.to_string().as_str());
                let root = place_root(&call.receiver).filter(|root| {
                    storing
                        && self.is_outer(root)
                        && self
                            .outer
                            .iter()
                            .any(|p| p.ident == **root && p.holds_handles)
                });
                // `thread::Builder::new()...spawn(closure)`.
                let builder_spawn = call.method == "spawn"
                    && is_thread_builder(&call.receiver)
                    && !self.unsure.contains("std");
                self.visit_opaque(&call.receiver);
                if let Some(root) = root {
                    let place = Some(root.to_string());
                    self.within(Context::Sink { place }, |this| {
                        for arg in &call.args {
                            this.visit_expr(arg);
                        }
                    });
                } else if builder_spawn {
                    for arg in &call.args {
                        if matches!(peel(arg), Expr::Closure(_)) {
                            let what = "std::thread::Builder::spawn".to_string();
                            self.within(Context::Thread { what }, |this| this.visit_expr(arg));
                        } else {
                            self.visit_opaque(arg);
                        }
                    }
                } else {
                    for arg in &call.args {
                        self.visit_opaque(arg);
                    }
                }
            }
            Expr::Call(call) => {
                // A path whose first segment the body itself declares (`mod std { .. }`,
                // `mod trellis { .. }`, `fn Some(..)`, a `use x as tokio;`) is the body's
                // own, not the one this pass knows.
                let path = call_path(&call.func).filter(|path| {
                    path.first()
                        .is_none_or(|first| !self.unsure.contains(first))
                });
                let spawner = path.as_deref().and_then(thread_spawner);
                let wrapping = path.as_deref().is_some_and(is_wrapping_constructor);
                let inner_nursery = path.as_deref().is_some_and(|p| {
                    matches!(
                        p.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
                        ["trellis", "nursery"]
                    )
                });
                self.visit_opaque(&call.func);
                for arg in &call.args {
                    let runs_elsewhere = matches!(peel(arg), Expr::Closure(_) | Expr::Async(_));
                    if let Some(what) = spawner.as_ref().filter(|_| runs_elsewhere) {
                        let what = what.clone();
                        self.within(Context::Thread { what }, |this| this.visit_expr(arg));
                    } else if inner_nursery {
                        match peel(arg) {
                            Expr::Closure(closure) => {
                                self.within(Context::Opaque, |this| {
                                    this.visit_closure(closure, true);
                                });
                            }
                            other => self.visit_opaque(other),
                        }
                    } else if wrapping {
                        self.visit_expr(arg);
                    } else {
                        self.visit_opaque(arg);
                    }
                }
            }
            Expr::ForLoop(for_loop) => {
                self.visit_opaque(&for_loop.expr);
                self.within(Context::Opaque, |this| {
                    this.scoped(|this| {
                        this.bind_pat(&for_loop.pat);
                        this.visit_block(&for_loop.body);
                    });
                });
            }
            Expr::Match(m) => {
                self.visit_opaque(&m.expr);
                self.within(Context::Opaque, |this| {
                    for arm in &m.arms {
                        this.scoped(|this| {
                            this.bind_pat(&arm.pat);
                            if let Some((_, guard)) = &arm.guard {
                                this.visit_expr(guard);
                            }
                            this.visit_expr(&arm.body);
                        });
                    }
                });
            }
            Expr::If(i) => {
                self.within(Context::Opaque, |this| {
                    this.scoped(|this| {
                        this.visit_expr(&i.cond);
                        this.visit_block(&i.then_branch);
                    });
                    if let Some((_, else_branch)) = &i.else_branch {
                        this.visit_expr(else_branch);
                    }
                });
            }
            Expr::While(w) => {
                self.within(Context::Opaque, |this| {
                    this.scoped(|this| {
                        this.visit_expr(&w.cond);
                        this.visit_block(&w.body);
                    });
                });
            }
            Expr::Let(l) => {
                self.visit_opaque(&l.expr);
                self.bind_pat(&l.pat);
            }
            Expr::Macro(mac) => self.visit_macro(&mac.mac),
            other => {
                self.within(Context::Opaque, |this| syn::visit::visit_expr(this, other));
            }
        }
    }
}

/// Whether `e` is a chain on `std::thread::Builder::new()` (`std::thread::Builder::new().name(..)`);
/// a bare `thread::Builder` may be the user's own, as with `thread_spawner`.
fn is_thread_builder(e: &Expr) -> bool {
    match peel(e) {
        Expr::MethodCall(call) => is_thread_builder(&call.receiver),
        Expr::Call(call) => call_path(&call.func).is_some_and(|path| {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            matches!(path.as_slice(), ["std", "thread", "Builder", "new"])
        }),
        _ => false,
    }
}
