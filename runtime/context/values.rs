//! Context variables with PEP 567 semantics: [`Context`] and the state behind every
//! [`ContextVar`].
//!
//! This module holds the contexts, their persistent maps, the current context and the
//! hooks the runtime calls. The variables themselves ([`ContextVar`], with its [`Token`] and
//! [`ResetError`]) are in the child module `var.rs`, which reads and writes this state
//! directly and keeps the invariants below.
//!
//! # State
//!
//! - Each [`Context`] is a handle (`Rc<Inner>`) to a [`Vars`]: two persistent maps from a
//!   variable's id to its value, one for variables children inherit and one for
//!   `no_inherit` variables. A map ([`Map`]) is a vector of entries sorted by id (few
//!   variables: a scan is cheaper than a hash), in an `Rc` shared between copies and
//!   written copy-on-write. A map emptied by a reset is kept (the next set allocates
//!   nothing); [`inherit`] treats it as no map.
//! - `CURRENT`, one per thread, is the context that reads and writes go to. `None` until
//!   first needed, meaning the thread's own context is still empty. Beside it, a cache of
//!   the last variable read ([`Current`]): a repeated read in the same context is one
//!   thread-local access and a compare (invariant 7). `CURRENT` has no destructor (its
//!   accesses, two per poll of every child, then need no state check); what it holds
//!   is dropped at the thread's end by `DROP_CURRENT_AT_EXIT`, registered the first time
//!   it keeps anything.
//! - Every nursery child owns a context made by [`inherit`] at spawn time (`None` while
//!   there is nothing to inherit: spawning then allocates nothing). The nursery moves it
//!   into `CURRENT` with [`enter_child`] around each poll of the child and moves it back
//!   out afterwards, with whatever the child set. A nursery body is polled without that,
//!   so it shares its caller's context. The root task of `trellis::run` runs in a copy of
//!   the thread's context ([`snapshot`]), as asyncio's main task does.
//! - A [`SendContext`] is a context copied for another thread: its values cloned into
//!   `Send` boxes ([`send_snapshot`]), turned back into a context there
//!   ([`SendContext::into_context`]).
//!
//! # Invariants
//!
//! 1. A map reachable from two contexts is never mutated: writers go through
//!    `Rc::make_mut`, which copies a shared map first. So copying a context (for a child, a
//!    snapshot, a scope) is two `Rc` clones, and what either side sets afterwards is
//!    invisible to the other.
//! 2. Only [`enter`]'s guard and the first use on a thread change `CURRENT`. The guard puts
//!    back what it replaced when dropped, also on unwind, so contexts nest exactly like the
//!    polls that entered them.
//! 3. No `RefCell` borrow is held while user code runs (a default function, the closure of
//!    [`ContextVar::with`], a value's `Clone` or `Drop`): readers clone the value's `Rc`
//!    out first, and a replaced value is dropped after the borrow ends. User code may
//!    therefore read and set context variables from anywhere, including destructors.
//! 4. A variable's id is assigned once, on first use, from a process-wide counter; the
//!    entry under that id always holds an `Option<T>` of the variable's type `T`, and it is
//!    `Some` (the `Option` lets a reset empty a value's allocation for reuse, invariant 8).
//! 5. `Inner::running` holds the child depth (`Current::depth`) at which a
//!    [`Context::run`] of that context is inside a poll, or a [`Context::run_sync`] inside
//!    its closure, exactly while one is (PEP 567 forbids entering a context that is already
//!    entered). A depth, not just "entered", because a nursery polls its children inside
//!    its own poll: a child is another task (asyncio would run it in a step of its own), so
//!    it may run a context its parent's `run` has entered, as two tasks taking turns may.
//!    Polls nest, so code deeper than the run is in a child's poll, and code at its depth
//!    in the same task's.
//! 6. Every value is `Send + Clone` (the bounds of [`ContextVar::set`] and
//!    [`ContextVar::scope`], the only ways in), and its entry carries `share::<T>` (in its
//!    `TypeMeta`, a constant per type), a plain
//!    function pointer that clones it into a `Box<dyn Any + Send>`. So a context can be
//!    copied to another thread ([`SendContext`], for `to_thread` and `from_thread`) while
//!    the maps themselves stay `Rc`s: reads and copies on the task's thread pay no atomic.
//! 7. `CURRENT`'s cache holds, for one variable id, a clone of the value's `Rc` in the
//!    current context's map (or that the variable has no value there). Whatever changes the
//!    current context or its values empties it first ([`Current::replace`] for every
//!    switch, [`write_current`] for a set, and `reset`), so a read never sees a stale
//!    value; and the map still holds every value the cache does, so the cache is never a
//!    value's last reference: emptying it runs no user code, and a replaced value is still
//!    dropped when it is replaced.
//! 8. `CURRENT`'s spare is an allocation of a value whose `Option` is `None`, shared with
//!    nothing: a reset that removes the only reference to a value drops the value and keeps
//!    its allocation there, and the next set of a variable of the same type reuses it. So a
//!    set and reset in turn allocate nothing after the first.

#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

// A child module: variables reach the maps and `CURRENT` directly, and the rest of the
// crate still cannot touch them.
#[path = "var.rs"]
mod context_var;

pub use context_var::{ContextVar, ResetError, Token};

thread_local! {
    /// The context that reads and writes go to, and the last value read; see the module
    /// docs.
    static CURRENT: RefCell<ManuallyDrop<Current>> = const {
        RefCell::new(ManuallyDrop::new(Current::EMPTY))
    };
    /// Drops what `CURRENT` holds when the thread ends. `CURRENT` itself has no
    /// destructor, so that its accesses (two per poll of every child) need no state
    /// check; this one is touched, and its destructor registered, only the first time
    /// `CURRENT` keeps something (`Current::keep`).
    static DROP_CURRENT_AT_EXIT: DropCurrentAtExit = const { DropCurrentAtExit };
}

/// The destructor of `CURRENT` (see `DROP_CURRENT_AT_EXIT`).
struct DropCurrentAtExit;

impl Drop for DropCurrentAtExit {
    fn drop(&mut self) {
        // Taken out first, dropped outside the borrow: a value's `Drop` is user code
        // (invariant 3), which may still read context variables now.
        let left = CURRENT.try_with(|current| {
            std::mem::replace(
                &mut *current.borrow_mut(),
                ManuallyDrop::new(Current::EMPTY),
            )
        });
        if let Ok(left) = left {
            drop(ManuallyDrop::into_inner(left));
        }
    }
}

/// What `CURRENT` holds: the current context and a one-entry cache of the last variable
/// read in it (invariant 7).
struct Current {
    /// The current context; `None` while the thread's own context is still empty.
    ctx: Option<Context>,
    /// The id of the variable `cached` belongs to; 0 (no variable's id) when empty.
    cached_id: u64,
    /// The value of variable `cached_id` in `ctx` (`None`: it has none), a clone of the
    /// `Rc` in `ctx`'s map.
    cached: Option<Rc<dyn Any>>,
    /// An allocation for a value, emptied (`None` inside) by a reset, for the next set of
    /// a variable of its type (invariant 8).
    spare: Option<Rc<dyn Any>>,
    /// `DROP_CURRENT_AT_EXIT` is registered on this thread.
    drops_at_exit: bool,
    /// How many children's polls enclose the code running now (invariant 5): 0 in a
    /// runtime's root task and outside any runtime.
    depth: u32,
}

impl Current {
    const EMPTY: Current = Current {
        ctx: None,
        cached_id: 0,
        cached: None,
        spare: None,
        drops_at_exit: false,
        depth: 0,
    };

    /// Called whenever `CURRENT` may come to hold something past the poll under way (the
    /// thread's own context, a cached value, a spare): makes sure it is dropped when the
    /// thread ends. One test after the first time.
    #[inline]
    fn keep(&mut self) {
        if !self.drops_at_exit {
            // Fails only while the thread is being torn down; what is kept then leaks.
            self.drops_at_exit = DROP_CURRENT_AT_EXIT.try_with(|_| ()).is_ok();
        }
    }

    /// Empties the cache, before `ctx` changes or its values do (invariant 7).
    #[inline]
    fn forget(&mut self) {
        // A test first: a switch with nothing cached (most polls) writes nothing.
        if self.cached_id != 0 {
            self.cached_id = 0;
            // Never the last reference to the value (invariant 7): no user code runs here.
            self.cached = None;
        }
    }

    /// Makes `ctx` current; returns the context it replaced.
    #[inline]
    fn replace(&mut self, ctx: Option<Context>) -> Option<Context> {
        self.forget();
        std::mem::replace(&mut self.ctx, ctx)
    }

    /// Into a child's poll (`step` 1) or back out of it (-1): its context, or the one
    /// around it, becomes current, one child deeper or shallower (invariant 5).
    #[inline]
    fn switch_child(&mut self, ctx: Option<Context>, step: i32) -> Option<Context> {
        self.depth = self.depth.wrapping_add_signed(step);
        self.replace(ctx)
    }

    /// The value of variable `id` in the current context: from the cache when it holds
    /// `id`, else looked up and cached.
    #[inline]
    fn value(&mut self, id: u64, inherit: bool) -> Option<Rc<dyn Any>> {
        if self.cached_id == id {
            return self.cached.clone();
        }
        self.fill(id, inherit)
    }

    /// A cache miss: looks `id` up and caches its value (or its absence).
    #[inline(never)]
    fn fill(&mut self, id: u64, inherit: bool) -> Option<Rc<dyn Any>> {
        let found = self.ctx.as_ref().and_then(|ctx| {
            let vars = ctx.inner.vars.borrow();
            vars.get(id, inherit).map(|e| e.value.clone())
        });
        self.cached_id = id;
        // The value replaced is still in `ctx`'s map (invariant 7): no user code runs here.
        self.cached = found.clone();
        if found.is_some() {
            self.keep();
        }
        found
    }
}

// ---------------------------------------------------------------------------------------
// The persistent maps.

/// Up to this many entries a lookup scans; beyond, it bisects.
const SCAN_LIMIT: usize = 8;

/// One context's values of one kind (inherited or `no_inherit`): entries sorted by variable
/// id, in a vector. Programs have few context variables, so a scan of a few ids is cheaper
/// than hashing (and a bisection keeps a lookup `O(log n)` for many); copying it (only
/// when a shared map is written, invariant 1) is one allocation and reference counts.
#[derive(Clone, Default)]
struct Map {
    /// Sorted by id, each id once.
    entries: Vec<(u64, Entry)>,
}

impl Map {
    /// Where `id` is (`Ok`) or would go (`Err`).
    #[inline]
    fn find(&self, id: u64) -> Result<usize, usize> {
        if self.entries.len() <= SCAN_LIMIT {
            for (i, (key, _)) in self.entries.iter().enumerate() {
                if *key >= id {
                    return if *key == id { Ok(i) } else { Err(i) };
                }
            }
            Err(self.entries.len())
        } else {
            self.entries.binary_search_by_key(&id, |(key, _)| *key)
        }
    }

    #[inline]
    fn get(&self, id: u64) -> Option<&Entry> {
        let i = self.find(id).ok()?;
        Some(&self.entries[i].1)
    }

    /// Stores `entry` under `id`; returns the entry it replaced.
    fn insert(&mut self, id: u64, entry: Entry) -> Option<Entry> {
        match self.find(id) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, entry)),
            Err(i) if i == self.entries.len() => {
                self.entries.push((id, entry));
                None
            }
            Err(i) => {
                self.entries.insert(i, (id, entry));
                None
            }
        }
    }

    /// Removes the entry at `i` (from [`find`](Map::find)).
    fn remove_at(&mut self, i: usize) -> Entry {
        if i + 1 == self.entries.len() {
            return self.entries.pop().expect("not empty").1;
        }
        self.entries.remove(i).1
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&u64, &Entry)> {
        self.entries.iter().map(|(id, e)| (id, e))
    }
}

/// One variable's value in a context.
#[derive(Clone)]
struct Entry {
    /// A `T` of the variable (invariant 4).
    value: Rc<dyn Any>,
    /// The variable's name, for debugging and errors.
    name: &'static str,
    /// What depends only on `T`: one pointer, so an entry stays as small as it was
    /// before values could cross threads (invariant 6).
    meta: &'static TypeMeta,
}

/// Clones a variable's value (a `T`) into a box that may go to another thread.
type Share = fn(&dyn Any) -> Box<dyn Any + Send>;

/// The functions of a variable's value type `T`, in a constant (one per `T`).
struct TypeMeta {
    /// `type_name::<T>`, for debugging.
    type_name: fn() -> &'static str,
    /// `share::<T>` (invariant 6).
    share: Share,
}

/// The [`TypeMeta`] of `T`, a promoted constant: no allocation, no registry.
fn type_meta<T: Any + Send + Clone>() -> &'static TypeMeta {
    const {
        &TypeMeta {
            type_name: std::any::type_name::<T>,
            share: share::<T>,
        }
    }
}

/// The [`Share`] of variables of type `T`.
fn share<T: Any + Send + Clone>(value: &dyn Any) -> Box<dyn Any + Send> {
    let value = value
        .downcast_ref::<Option<T>>()
        .and_then(Option::as_ref)
        .expect("an entry holds its variable's type (invariant 4)");
    Box::new(Some(value.clone()))
}

/// The values of one context.
#[derive(Clone, Default)]
struct Vars {
    /// Values of inheriting variables; `None` when there are none.
    inherited: Option<Rc<Map>>,
    /// Values of `no_inherit` variables; children start without them.
    local: Option<Rc<Map>>,
}

impl Vars {
    fn slot(&self, inherit: bool) -> &Option<Rc<Map>> {
        if inherit {
            &self.inherited
        } else {
            &self.local
        }
    }

    #[inline]
    fn get(&self, id: u64, inherit: bool) -> Option<&Entry> {
        self.slot(inherit).as_ref()?.get(id)
    }

    /// Stores `entry` (or removes the variable when `None`); returns the entry it replaced,
    /// for the caller to drop once no borrow is held (invariant 3).
    fn put(&mut self, id: u64, inherit: bool, entry: Option<Entry>) -> Option<Entry> {
        let slot = if inherit {
            &mut self.inherited
        } else {
            &mut self.local
        };
        match entry {
            Some(entry) => Rc::make_mut(slot.get_or_insert_with(Rc::default)).insert(id, entry),
            None => {
                let map = slot.as_mut()?;
                // A lookup first: removing from a shared map would copy it for nothing.
                let i = map.find(id).ok()?;
                // An emptied map is kept, so that the next set allocates nothing;
                // `inherit` treats it as no map.
                Some(Rc::make_mut(map).remove_at(i))
            }
        }
    }

    fn len(&self) -> usize {
        self.inherited.as_ref().map_or(0, |m| m.len()) + self.local.as_ref().map_or(0, |m| m.len())
    }

    fn entries(&self) -> Vec<ContextEntry> {
        let mut out = Vec::with_capacity(self.len());
        for (map, inherited) in [(&self.inherited, true), (&self.local, false)] {
            for (&id, e) in map.iter().flat_map(|m| m.iter()) {
                out.push(ContextEntry {
                    id,
                    name: e.name,
                    type_name: (e.meta.type_name)(),
                    inherited,
                    value: e.value.clone(),
                });
            }
        }
        out.sort_by_key(|e| e.id);
        out
    }
}

fn downcast<T: 'static>(value: &Rc<dyn Any>) -> &T {
    value
        .downcast_ref::<Option<T>>()
        .and_then(Option::as_ref)
        .expect("an entry holds its variable's type (invariant 4)")
}

/// A value's allocation for a new entry of a `T`: the thread's spare one when it is a
/// `T`'s (invariant 8), else a new one.
#[inline]
fn allocate<T: 'static>(spare: &mut Option<Rc<dyn Any>>, value: T) -> Rc<dyn Any> {
    let fits = spare
        .as_mut()
        .and_then(Rc::get_mut)
        .and_then(|slot| slot.downcast_mut::<Option<T>>());
    match fits {
        Some(slot) => {
            // Replaces a `None`: no user code runs.
            *slot = Some(value);
            spare.take().expect("just matched")
        }
        None => Rc::new(Some(value)),
    }
}

/// Drops the value of an entry that a reset removed and, when nothing else shares its
/// allocation, keeps that as the thread's spare (invariant 8). Called with no borrow held:
/// the value's `Drop` is user code (invariant 3).
fn recycle<T: 'static>(mut value: Rc<dyn Any>) {
    let Some(slot) = Rc::get_mut(&mut value).and_then(|v| v.downcast_mut::<Option<T>>()) else {
        return;
    };
    drop(slot.take());
    let _ = CURRENT.try_with(|current| {
        if let Ok(mut current) = current.try_borrow_mut()
            && current.spare.is_none()
        {
            current.spare = Some(value);
            current.keep();
        }
    });
}

// ---------------------------------------------------------------------------------------
// Context

/// A set of context variable values: Python's `contextvars.Context`.
///
/// Every task runs in a context; [`Context::current`] takes a snapshot of the current one
/// and [`run`](Context::run) runs a future inside a context. A `Context` is a handle:
/// `clone` gives another handle to the *same* context (like a second Python reference),
/// and [`copy`](Context::copy) an independent one. Both are O(1); the values are shared
/// until one side sets a variable.
///
/// # Examples
///
/// ```
/// use trellis::{Context, ContextVar};
///
/// static VAR: ContextVar<&str> = ContextVar::with_default("var", || "default");
///
/// trellis::run(async {
///     VAR.set("spam");
///     let ctx = Context::current(); // a snapshot
///     VAR.set("ham");
///     assert_eq!(ctx.get(&VAR), Some("spam"));
///
///     // Inside `run`, reads and writes go to `ctx`, not to the caller's context.
///     ctx.run(async {
///         assert_eq!(VAR.get(), Some("spam"));
///         VAR.set("eggs");
///     })
///     .await;
///     assert_eq!(VAR.get(), Some("ham"));
///     assert_eq!(ctx.get(&VAR), Some("eggs")); // `run` changed `ctx`, as in PEP 567
///
///     let names: Vec<_> = ctx.iter().map(|e| e.name()).collect();
///     assert_eq!(names, ["var"]);
/// });
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Rc<Inner>,
}

struct Inner {
    vars: RefCell<Vars>,
    /// Invariant 5: `Some(depth)` while the task at that child depth runs this context.
    running: Cell<Option<u32>>,
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.iter();
        f.debug_map()
            .entries(entries.map(|e| (e.name, e.type_name)))
            .finish()
    }
}

impl Context {
    /// An empty context (Python's `Context()`): every variable has its default.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static LEVEL: ContextVar<u8> = ContextVar::with_default("level", || 1);
    ///
    /// LEVEL.set(5);
    /// let ctx = Context::new();
    /// assert!(ctx.is_empty()); // not a copy of the caller's context
    /// assert_eq!(ctx.run_sync(|| LEVEL.get()), Some(1)); // reads inside see the default
    /// ```
    pub fn new() -> Context {
        Context::from_vars(Vars::default())
    }

    fn from_vars(vars: Vars) -> Context {
        Context {
            inner: Rc::new(Inner {
                vars: RefCell::new(vars),
                running: Cell::new(None),
            }),
        }
    }

    /// A copy of the current context (Python's `copy_context()`), in O(1).
    ///
    /// It includes `no_inherit` variables: a snapshot is an explicit act, not a spawn.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static CONN: ContextVar<u32> = ContextVar::new("conn").no_inherit();
    ///
    /// trellis::run(async {
    ///     USER.set("ada");
    ///     CONN.set(7);
    ///     let snapshot = Context::current();
    ///     USER.set("bob");
    ///     assert_eq!(snapshot.get(&USER), Some("ada")); // later sets are not in it
    ///     assert_eq!(snapshot.get(&CONN), Some(7)); // `no_inherit` variables are
    /// });
    /// ```
    pub fn current() -> Context {
        let vars = CURRENT.with_borrow(|current| {
            current
                .ctx
                .as_ref()
                .map(|ctx| ctx.inner.vars.borrow().clone())
                .unwrap_or_default()
        });
        Context::from_vars(vars)
    }

    /// An independent copy of this context, in O(1): later sets in either are invisible to
    /// the other.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let ctx = Context::new();
    /// ctx.run_sync(|| USER.set("ada"));
    /// let copy = ctx.copy();
    /// copy.run_sync(|| USER.set("bob"));
    /// assert_eq!(ctx.get(&USER), Some("ada"));
    /// assert_eq!(copy.get(&USER), Some("bob"));
    /// ```
    pub fn copy(&self) -> Context {
        Context::from_vars(self.inner.vars.borrow().clone())
    }

    /// Whether `a` and `b` are handles to the same context.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let ctx = Context::new();
    /// let handle = ctx.clone();
    /// assert!(Context::ptr_eq(&ctx, &handle));
    /// assert!(!Context::ptr_eq(&ctx, &ctx.copy()));
    /// ctx.run_sync(|| USER.set("ada"));
    /// assert_eq!(handle.get(&USER), Some("ada")); // one context, two handles
    /// ```
    pub fn ptr_eq(a: &Context, b: &Context) -> bool {
        Rc::ptr_eq(&a.inner, &b.inner)
    }

    /// Runs `fut` inside this context: around each poll of `fut`, reads and writes of
    /// context variables go to this context, and what `fut` sets stays in it afterwards
    /// (PEP 567's `Context.run`). Children that `fut` spawns copy this context.
    ///
    /// To keep this context unchanged, run a copy: `ctx.copy().run(fut)`.
    ///
    /// # Panics
    ///
    /// A poll panics if this context is already entered by an enclosing `run` or
    /// [`run_sync`](Context::run_sync) (Python raises `RuntimeError`). Two `run`s of one
    /// context in different tasks are allowed: they take turns and share its values.
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops `fut` inside this context, so destructors see its values.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// trellis::run(async {
    ///     let ctx = Context::new();
    ///     ctx.run(async {
    ///         USER.set("ada");
    ///         trellis::yield_now().await;
    ///         assert_eq!(USER.get(), Some("ada")); // still in `ctx` after a suspension
    ///     })
    ///     .await;
    ///     assert_eq!(USER.get(), None); // the caller's context is untouched
    ///     assert_eq!(ctx.get(&USER), Some("ada")); // the set stayed in `ctx`
    ///
    ///     ctx.copy().run(async { USER.set("bob"); }).await; // leaves `ctx` as it is
    ///     assert_eq!(ctx.get(&USER), Some("ada"));
    /// });
    /// ```
    pub fn run<F: Future>(&self, fut: F) -> Run<F> {
        Run {
            ctx: self.clone(),
            fut: Some(fut),
        }
    }

    /// Calls `f` inside this context; what `f` sets stays in it (PEP 567's `Context.run`
    /// with a callable).
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static VAR: ContextVar<u32> = ContextVar::new("var");
    ///
    /// let ctx = Context::new();
    /// let token = ctx.run_sync(|| VAR.set(1));
    /// assert_eq!(ctx.get(&VAR), Some(1));
    /// assert_eq!(VAR.get(), None);
    /// assert!(VAR.reset(token).is_err()); // the token belongs to `ctx`
    /// ```
    ///
    /// # Panics
    ///
    /// If this context is already entered by an enclosing `run` or `run_sync`.
    #[track_caller]
    pub fn run_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        let _running = self.start_running();
        f()
    }

    #[track_caller]
    fn start_running(&self) -> Running<'_> {
        let depth = CURRENT.with_borrow(|current| current.depth);
        let prev = self.inner.running.replace(Some(depth));
        assert!(
            prev != Some(depth),
            "cannot enter a context that is already entered: a `Context::run` or \
             `Context::run_sync` of it encloses this one; run a copy (`ctx.copy()`) instead"
        );
        Running {
            inner: &self.inner,
            prev,
            _entered: enter(self),
        }
    }

    /// The value of `var` in this context, ignoring its default (as in PEP 567).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static LEVEL: ContextVar<u8> = ContextVar::with_default("level", || 1);
    ///
    /// let ctx = Context::new();
    /// assert_eq!(ctx.get(&LEVEL), None); // the default is not a value
    /// ctx.run_sync(|| LEVEL.set(3));
    /// assert_eq!(ctx.get(&LEVEL), Some(3));
    /// ```
    pub fn get<T: Clone + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        let value = self
            .inner
            .vars
            .borrow()
            .get(var.id(), var.inherit)
            .map(|e| e.value.clone())?;
        Some(downcast::<T>(&value).clone())
    }

    /// Whether `var` has a value in this context (its default does not count).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static LEVEL: ContextVar<u8> = ContextVar::with_default("level", || 1);
    ///
    /// let ctx = Context::new();
    /// assert!(!ctx.contains(&LEVEL));
    /// let token = ctx.run_sync(|| LEVEL.set(3));
    /// assert!(ctx.contains(&LEVEL));
    /// ctx.run_sync(|| LEVEL.reset(token)).unwrap(); // it had no value: removed again
    /// assert!(!ctx.contains(&LEVEL));
    /// ```
    pub fn contains<T: 'static>(&self, var: &ContextVar<T>) -> bool {
        self.inner
            .vars
            .borrow()
            .get(var.id(), var.inherit)
            .is_some()
    }

    /// How many variables have a value in this context.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static RETRIES: ContextVar<u32> = ContextVar::new("retries");
    ///
    /// let ctx = Context::new();
    /// ctx.run_sync(|| {
    ///     USER.set("ada");
    ///     RETRIES.set(1);
    ///     RETRIES.set(2);
    /// });
    /// assert_eq!(ctx.len(), 2); // variables, not sets
    /// ```
    pub fn len(&self) -> usize {
        self.inner.vars.borrow().len()
    }

    /// Whether no variable has a value in this context.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let ctx = Context::new();
    /// assert!(ctx.is_empty());
    /// ctx.run_sync(|| USER.set("ada"));
    /// assert!(!ctx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The variables that have a value in this context, for debugging, in the order the
    /// variables were first used in the process. Takes a snapshot: O(n).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static CONN: ContextVar<u32> = ContextVar::new("conn").no_inherit();
    ///
    /// let ctx = Context::new();
    /// ctx.run_sync(|| {
    ///     USER.set("ada");
    ///     CONN.set(7);
    /// });
    /// let entries: Vec<(&str, bool)> = ctx.iter().map(|e| (e.name(), e.is_inherited())).collect();
    /// assert_eq!(entries, [("user", true), ("conn", false)]);
    /// ```
    pub fn iter(&self) -> std::vec::IntoIter<ContextEntry> {
        self.inner.vars.borrow().entries().into_iter()
    }
}

/// One variable of a context, as [`Context::iter`] lists it.
#[derive(Clone)]
pub struct ContextEntry {
    id: u64,
    name: &'static str,
    type_name: &'static str,
    inherited: bool,
    value: Rc<dyn Any>,
}

impl ContextEntry {
    /// The variable's name.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let ctx = Context::new();
    /// ctx.run_sync(|| USER.set("ada"));
    /// let entry = ctx.iter().next().unwrap();
    /// assert_eq!(entry.name(), "user");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The name of the variable's type, as [`std::any::type_name`] gives it.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::new("retries");
    ///
    /// let ctx = Context::new();
    /// ctx.run_sync(|| RETRIES.set(3));
    /// let entry = ctx.iter().next().unwrap();
    /// assert_eq!(entry.type_name(), std::any::type_name::<u32>());
    /// ```
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Whether children inherit the variable (false for `no_inherit`).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static CONN: ContextVar<u32> = ContextVar::new("conn").no_inherit();
    ///
    /// let ctx = Context::new();
    /// ctx.run_sync(|| CONN.set(7));
    /// let entry = ctx.iter().next().unwrap();
    /// assert!(!entry.is_inherited());
    /// ```
    pub fn is_inherited(&self) -> bool {
        self.inherited
    }

    /// The value, if it is a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::new("retries");
    ///
    /// let ctx = Context::new();
    /// ctx.run_sync(|| RETRIES.set(3));
    /// let entry = ctx.iter().next().unwrap();
    /// assert_eq!(entry.downcast_ref::<u32>(), Some(&3));
    /// assert_eq!(entry.downcast_ref::<i64>(), None); // not the variable's type
    /// ```
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.value.downcast_ref::<Option<T>>()?.as_ref()
    }
}

impl fmt::Debug for ContextEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextEntry")
            .field("name", &self.name)
            .field("type", &self.type_name)
            .field("inherited", &self.inherited)
            .finish_non_exhaustive()
    }
}

/// Puts `Inner::running` back (to the enclosing task's run, or none) and leaves the
/// context when dropped, also on unwind.
struct Running<'a> {
    inner: &'a Inner,
    prev: Option<u32>,
    _entered: Entered,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.inner.running.set(self.prev);
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Context::run`] and [`ContextVar::scope`]: runs a future inside a
    /// context.
    ///
    /// # Cancellation
    ///
    /// Dropping it drops the inner future inside the context.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Run<F> {
        ctx: Context,
        // `None` once dropped by our `drop`, which must drop it inside `ctx`.
        #[pin]
        fut: Option<F>,
    }

    impl<F> PinnedDrop for Run<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut fut = this.fut;
            // Thread-local storage is gone when a thread's destructors run: drop plainly.
            let _entered = CURRENT.try_with(|_| ()).ok().map(|()| enter(this.ctx));
            fut.set(None);
        }
    }
}

impl<F> fmt::Debug for Run<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Run<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _running = this.ctx.start_running();
        match this.fut.as_pin_mut() {
            Some(fut) => fut.poll(cx),
            None => unreachable!("`fut` is only taken when `Run` is dropped"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The hooks the nursery calls, and the current context.

/// Calls `f`, which writes to the current context, with that context (creating the
/// thread's context on first use) and the spare allocation. Empties the cache first
/// (invariant 7).
fn write_current<R>(f: impl FnOnce(&Context, &mut Option<Rc<dyn Any>>) -> R) -> R {
    CURRENT.with_borrow_mut(|current| {
        current.forget();
        current.keep();
        let Current { ctx, spare, .. } = &mut **current;
        f(ctx.get_or_insert_with(Context::new), spare)
    })
}

/// The context a new child starts with: a copy of the current one's inherited variables,
/// or `None` when there is nothing to inherit (no allocation; the child's first `set`
/// creates its context).
pub(crate) fn inherit() -> Option<Context> {
    let inherited = CURRENT.with_borrow(|current| {
        let ctx = current.ctx.as_ref()?;
        let vars = ctx.inner.vars.borrow();
        vars.inherited
            .as_ref()
            .filter(|map| !map.is_empty())
            .cloned()
    })?;
    Some(Context::from_vars(Vars {
        inherited: Some(inherited),
        local: None,
    }))
}

/// Makes `ctx` current until the guard drops: one `Rc` clone and one swap.
pub(crate) fn enter(ctx: &Context) -> Entered {
    let prev = CURRENT.with_borrow_mut(|current| current.replace(Some(ctx.clone())));
    Entered { prev }
}

/// Puts back the context [`enter`] replaced when dropped (also on unwind).
#[derive(Debug)]
#[must_use = "the context is left when the guard drops"]
pub(crate) struct Entered {
    prev: Option<Context>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let prev = self.prev.take();
        // `try_with`: a guard may drop while the thread's storage is being torn down. The
        // context we left is dropped after `replace` returns, outside the borrow.
        let _ = CURRENT.try_with(|current| current.borrow_mut().replace(prev));
    }
}

/// A copy of the current context, if the thread has one (for the root task of a runtime).
pub(crate) fn snapshot() -> Option<Context> {
    CURRENT.with_borrow(|current| current.ctx.as_ref().map(Context::copy))
}

/// Makes a child's context current by moving it in (no reference counting); the guard's
/// [`leave`](ChildEntered::leave) moves it back out, with whatever the child set.
#[inline]
pub(crate) fn enter_child(ctx: Option<Context>) -> ChildEntered {
    // `try_with` (it cannot fail: `CURRENT` has no destructor) is inlined; `with` is not.
    let prev = CURRENT
        .try_with(|current| current.borrow_mut().switch_child(ctx, 1))
        .unwrap_or_default();
    ChildEntered { prev: Some(prev) }
}

/// Restores the context [`enter_child`] replaced. Dropped without `leave` (on unwind), the
/// child's context is dropped.
#[derive(Debug)]
#[must_use = "call `leave` to get the child's context back"]
pub(crate) struct ChildEntered {
    /// `Some` until the previous context is put back.
    prev: Option<Option<Context>>,
}

impl ChildEntered {
    /// Puts the previous context back and returns the child's.
    #[inline]
    pub(crate) fn leave(mut self) -> Option<Context> {
        let prev = self.prev.take().expect("left once");
        std::mem::forget(self); // `prev` is taken: its destructor would do nothing
        CURRENT
            .try_with(|current| current.borrow_mut().switch_child(prev, -1))
            .unwrap_or_default()
    }
}

impl Drop for ChildEntered {
    fn drop(&mut self) {
        if let Some(prev) = self.prev.take() {
            // `try_with`: a guard may drop while the thread's storage is being torn down.
            let _ = CURRENT.try_with(|current| current.borrow_mut().switch_child(prev, -1));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Copies for other threads.

/// A copy of a context that may go to another thread (`to_thread`, `from_thread`): every
/// value cloned into a `Send` box (invariant 6).
pub(crate) struct SendContext {
    entries: Vec<SendEntry>,
}

struct SendEntry {
    id: u64,
    inherit: bool,
    name: &'static str,
    meta: &'static TypeMeta,
    value: Box<dyn Any + Send>,
}

impl fmt::Debug for SendContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|e| (e.name, (e.meta.type_name)())))
            .finish()
    }
}

/// A copy of the current context (both maps, as [`Context::current`]) for another thread.
/// Costs nothing when the context is empty; otherwise one clone and one box per variable.
pub(crate) fn send_snapshot() -> SendContext {
    // The entries' `Rc`s first, under the borrows; the values' `clone` (user code) runs
    // after they end (invariant 3).
    let entries: Vec<(u64, bool, Entry)> = CURRENT.with_borrow(|current| {
        let Some(ctx) = current.ctx.as_ref() else {
            return Vec::new();
        };
        let vars = ctx.inner.vars.borrow();
        let len = vars.len();
        if len == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(len);
        for (map, inherit) in [(&vars.inherited, true), (&vars.local, false)] {
            for (&id, e) in map.iter().flat_map(|m| m.iter()) {
                out.push((id, inherit, e.clone()));
            }
        }
        out
    });
    if entries.is_empty() {
        return SendContext {
            entries: Vec::new(),
        };
    }
    SendContext {
        entries: entries
            .into_iter()
            .map(|(id, inherit, e)| SendEntry {
                id,
                inherit,
                name: e.name,
                meta: e.meta,
                value: (e.meta.share)(&*e.value),
            })
            .collect(),
    }
}

impl SendContext {
    /// The context again, on this thread; `None` when it has no variable (nothing to
    /// allocate: a first `set` creates the context).
    pub(crate) fn into_context(self) -> Option<Context> {
        if self.entries.is_empty() {
            return None;
        }
        // Each map built at its final size, then shared: no copy-on-write, no rehash.
        let count = |inherit: bool| self.entries.iter().filter(|e| e.inherit == inherit).count();
        let mut maps = [count(false), count(true)].map(|n| {
            (n > 0).then(|| Map {
                entries: Vec::with_capacity(n),
            })
        });
        for e in self.entries {
            let value: Box<dyn Any> = e.value;
            let entry = Entry {
                value: Rc::from(value),
                name: e.name,
                meta: e.meta,
            };
            if let Some(map) = &mut maps[usize::from(e.inherit)] {
                map.insert(e.id, entry);
            }
        }
        let [local, inherited] = maps;
        Some(Context::from_vars(Vars {
            inherited: inherited.map(Rc::new),
            local: local.map(Rc::new),
        }))
    }
}
