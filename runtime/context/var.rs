//! [`ContextVar`], the variable a task reads and sets, and what its [`set`](ContextVar::set)
//! and [`reset`](ContextVar::reset) trade in: [`Token`] and [`ResetError`].
//!
//! A child module of `context`: a variable reads and writes the maps of the current
//! [`Context`] directly, under the state and invariants stated in `context`'s module docs
//! (the invariants cited below are numbered there).

#![forbid(unsafe_code)]

use std::any::type_name;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    CURRENT, Context, Entry, Inner, Run, allocate, downcast, recycle, type_meta, write_current,
};

/// Ids of variables; 0 means "not assigned yet".
static NEXT_VAR_ID: AtomicU64 = AtomicU64::new(1);

/// A variable whose value depends on the task reading it: Python's `contextvars.ContextVar`.
///
/// Declare it in a `static`; every task sees its own value. A value set with [`set`] lives
/// in the current task's [`Context`]. A child spawned into a nursery starts with a copy of
/// its spawner's context as it was at the spawn: what the child sets is invisible to its
/// parent and siblings, and what the parent sets after the spawn is invisible to the child.
/// A nursery body runs in its caller's context.
///
/// Variables declared with [`no_inherit`](ContextVar::no_inherit) are not copied into
/// children (for values such as a borrowed connection that must not leak into them).
///
/// # Values are `Send + Clone`
///
/// [`set`] and [`scope`](ContextVar::scope) take values that are `Send + Clone`, because
/// [`to_thread`](crate::to_thread) runs its closure in a copy of the caller's context on
/// another thread (as Python's `to_thread` runs it in `copy_context()`), and a
/// [`RuntimeHandle`](crate::RuntimeHandle) carries the calling thread's context back to
/// the runtime: each value is cloned for the other thread. On the task's own thread values
/// are still shared, not cloned (contexts are `Rc`-based: copying one is two reference
/// counts, reading a value costs no atomic). For a value that is not `Send`, such as an
/// `Rc<RefCell<..>>`, use `Arc<Mutex<..>>`, or keep it in a task-local place of your own;
/// for one that is expensive to clone, store an `Arc` of it.
///
/// ```compile_fail,E0277
/// use std::rc::Rc;
/// use trellis::ContextVar;
///
/// static SHARED: ContextVar<Rc<u32>> = ContextVar::new("shared");
/// SHARED.set(Rc::new(1)); // error: `Rc<u32>` cannot be sent between threads safely
/// ```
///
/// # Outside a runtime
///
/// Code outside a runtime (`main`, a plain thread) uses the *thread's context*: one per
/// thread, empty at first, living as long as the thread. A new thread does not inherit it.
/// The root future of [`crate::run`] runs in a copy of it (as asyncio's main task does):
/// values set before `run` are visible inside, and what the root sets stays inside.
///
/// # Examples
///
/// ```
/// use trellis::ContextVar;
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
/// static LEVEL: ContextVar<&str> = ContextVar::with_default("level", || "info");
///
/// fn log(msg: &str) -> String {
///     // No id passed around: each task reads its own.
///     format!("[{:?} {}] {msg}", REQUEST_ID.get(), LEVEL.get().unwrap())
/// }
///
/// let lines = std::cell::RefCell::new(Vec::new());
/// trellis::run(async {
///     trellis::nursery(async |n| {
///         for id in [1, 2] {
///             let lines = &lines;
///             n.spawn(async move {
///                 REQUEST_ID.set(id);
///                 trellis::yield_now().await; // the other request runs here
///                 lines.borrow_mut().push(log("done"));
///             });
///         }
///     })
///     .await
///     .unwrap();
///     assert_eq!(REQUEST_ID.get(), None); // the children's sets stayed in the children
/// });
/// assert_eq!(*lines.borrow(), ["[Some(1) info] done", "[Some(2) info] done"]);
/// ```
///
/// [`set`]: ContextVar::set
pub struct ContextVar<T: 'static> {
    name: &'static str,
    /// Assigned on first use (invariant 4); 0 before.
    id: AtomicU64,
    /// Called for a read that finds no value. A function rather than a value so that a
    /// `static` can hold a variable of a type that is not `Sync` (a `Cell`).
    default: Option<fn() -> T>,
    /// Whether children start with this variable's value.
    pub(super) inherit: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T: 'static> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextVar")
            .field("name", &self.name)
            .field("type", &type_name::<T>())
            .field("default", &self.default.is_some())
            .field("inherit", &self.inherit)
            .finish()
    }
}

impl<T: 'static> ContextVar<T> {
    /// A variable named `name` (for debugging and errors) with no default: [`get`] returns
    /// `None` until a value is set.
    ///
    /// # Examples
    ///
    /// ```
    /// static USER: trellis::ContextVar<String> = trellis::ContextVar::new("user");
    ///
    /// trellis::run(async {
    ///     assert_eq!(USER.get(), None);
    ///     USER.set("ada".to_string());
    ///     assert_eq!(USER.get().as_deref(), Some("ada"));
    /// });
    /// ```
    ///
    /// [`get`]: ContextVar::get
    pub const fn new(name: &'static str) -> ContextVar<T> {
        ContextVar {
            name,
            id: AtomicU64::new(0),
            default: None,
            inherit: true,
            _type: PhantomData,
        }
    }

    /// A variable whose reads return `default()` in a context with no value for it.
    ///
    /// The default is computed on each such read and never stored; [`Context::get`] does
    /// not see it (as in PEP 567).
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
    /// assert_eq!(RETRIES.get(), Some(3));
    /// ```
    pub const fn with_default(name: &'static str, default: fn() -> T) -> ContextVar<T> {
        let mut var = ContextVar::new(name);
        var.default = Some(default);
        var
    }

    /// The same variable, but children spawned into a nursery start without its value (they
    /// see the default). Snapshots ([`Context::current`], [`Context::copy`]) keep it.
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static CONN: ContextVar<u32> = ContextVar::new("conn").no_inherit();
    ///
    /// trellis::run(async {
    ///     CONN.set(7);
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async { assert_eq!(CONN.get(), None) });
    ///         assert_eq!(CONN.get(), Some(7)); // the body shares its caller's context
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub const fn no_inherit(mut self) -> ContextVar<T> {
        self.inherit = false;
        self
    }

    /// The name given at declaration.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    /// assert_eq!(REQUEST_ID.name(), "request_id");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether children start with this variable's value (false for `no_inherit`).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static CONN: ContextVar<u32> = ContextVar::new("conn").no_inherit();
    /// assert!(USER.is_inherited());
    /// assert!(!CONN.is_inherited());
    /// ```
    pub fn is_inherited(&self) -> bool {
        self.inherit
    }

    pub(super) fn id(&self) -> u64 {
        match self.id.load(Ordering::Relaxed) {
            0 => self.assign_id(),
            id => id,
        }
    }

    #[cold]
    fn assign_id(&self) -> u64 {
        // Relaxed is enough: the id is a bare number that publishes no other data, and
        // the compare-exchange makes every thread agree on a single winner.
        let fresh = NEXT_VAR_ID.fetch_add(1, Ordering::Relaxed);
        match self
            .id
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            Err(winner) => winner,
        }
    }

    /// The value in the current context, else the default, else `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
    ///
    /// trellis::run(async {
    ///     assert_eq!(USER.get(), None); // no value, no default
    ///     assert_eq!(RETRIES.get(), Some(3)); // the default
    ///     USER.set("ada");
    ///     RETRIES.set(5);
    ///     assert_eq!((USER.get(), RETRIES.get()), (Some("ada"), Some(5)));
    /// });
    /// ```
    #[inline]
    pub fn get(&self) -> Option<T>
    where
        T: Clone,
    {
        self.with(|v| v.cloned())
    }

    /// Calls `f` with a reference to the value in the current context (else the default,
    /// else `None`), without cloning it (for values that are expensive to clone).
    ///
    /// `f` may read and set context variables, this one included; a set inside `f` does
    /// not change the value `f` already holds.
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static PATH: ContextVar<Vec<String>> = ContextVar::new("path");
    /// PATH.set(vec!["api".into(), "users".into()]);
    /// assert_eq!(PATH.with(|p| p.map_or(0, |p| p.len())), 2);
    /// ```
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        let id = self.id();
        let found = CURRENT.with_borrow_mut(|current| current.value(id, self.inherit));
        match (found, self.default) {
            (Some(value), _) => f(Some(downcast::<T>(&value))),
            (None, Some(default)) => f(Some(&default())),
            (None, None) => f(None),
        }
    }

    /// Sets the value in the current context; returns a [`Token`] that [`reset`] takes to
    /// restore the value this replaced.
    ///
    /// The value stays until set again or reset, for the rest of the task (it is not undone
    /// when a block or a cancelled future ends). To give a value to one future only, use
    /// [`scope`](ContextVar::scope) or [`Context::run`].
    ///
    /// The value is `Send + Clone`, so that [`to_thread`](crate::to_thread) calls can run
    /// with a copy of it (see [Values are `Send + Clone`](ContextVar#values-are-send--clone)).
    ///
    /// [`reset`]: ContextVar::reset
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// trellis::run(async {
    ///     let token = USER.set("ada");
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {
    ///             assert_eq!(USER.get(), Some("ada")); // children start with a copy
    ///             USER.set("bob"); // changes the child's copy only
    ///         });
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(USER.get(), Some("ada"));
    ///     USER.reset(token).unwrap();
    ///     assert_eq!(USER.get(), None);
    /// });
    /// ```
    pub fn set(&self, value: T) -> Token<T>
    where
        T: Send + Clone,
    {
        let id = self.id();
        write_current(|ctx, spare| {
            let entry = Entry {
                value: allocate(spare, value),
                name: self.name,
                meta: type_meta::<T>(),
            };
            let old = ctx
                .inner
                .vars
                .borrow_mut()
                .put(id, self.inherit, Some(entry));
            Token {
                var: id,
                name: self.name,
                context: Rc::downgrade(&ctx.inner),
                old,
                _type: PhantomData,
            }
        })
    }

    /// Restores the value that the [`set`](ContextVar::set) which returned `token`
    /// replaced (removing the variable from the context when it had no value).
    ///
    /// The token is consumed, so resetting twice with one token does not compile:
    ///
    /// ```compile_fail,E0382
    /// use trellis::ContextVar;
    ///
    /// static V: ContextVar<u32> = ContextVar::new("v");
    /// let token = V.set(1);
    /// V.reset(token).unwrap();
    /// V.reset(token).unwrap(); // error: use of moved value
    /// ```
    ///
    /// # Errors
    ///
    /// [`ResetError`] (and no change) when `token` was returned by another variable's `set`,
    /// or by a `set` made in another context (another task, or inside a [`Context::run`]).
    pub fn reset(&self, token: Token<T>) -> Result<(), ResetError> {
        let id = self.id();
        if token.var != id {
            return Err(ResetError {
                var: self.name,
                kind: ResetErrorKind::OtherVar {
                    token_var: token.name,
                },
            });
        }
        let replaced = CURRENT.with_borrow_mut(|current| {
            current.forget();
            let ctx = current
                .ctx
                .as_ref()
                .filter(|ctx| std::ptr::eq(Rc::as_ptr(&ctx.inner), token.context.as_ptr()))?;
            let replaced = ctx.inner.vars.borrow_mut().put(id, self.inherit, token.old);
            Some(replaced)
        });
        match replaced {
            Some(replaced) => {
                // Outside every borrow (invariant 3).
                if let Some(entry) = replaced {
                    recycle::<T>(entry.value);
                }
                Ok(())
            }
            None => Err(ResetError {
                var: self.name,
                kind: ResetErrorKind::OtherContext,
            }),
        }
    }

    /// Runs `fut` in a copy of the current context in which this variable is `value`.
    ///
    /// Nothing `fut` sets (this variable or any other) escapes it, even when it is
    /// cancelled midway: the copy is dropped with it. The copy is taken now, like a spawn,
    /// not at the first poll: a set between the call and the `.await` is not in it, and in
    /// `A.scope(1, B.scope(2, fut))` the inner copy, made while the argument is built,
    /// does not see `A`'s 1 (nest through an `async` block instead:
    /// `A.scope(1, async { B.scope(2, fut).await })`). It is [`Context::run`] on a copy,
    /// with one variable changed first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::ContextVar;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let slow = USER.scope("ada", async {
    ///         assert_eq!(USER.get(), Some("ada"));
    ///         trellis::sleep_forever().await
    ///     });
    ///     assert_eq!(trellis::move_on_after(Duration::from_secs(1), slow).await, None);
    ///     assert_eq!(USER.get(), None);
    /// });
    /// ```
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops `fut` inside the copy, then the copy.
    pub fn scope<F: Future>(&self, value: T, fut: F) -> Run<F>
    where
        T: Send + Clone,
    {
        let ctx = Context::current();
        let entry = Entry {
            value: Rc::new(Some(value)),
            name: self.name,
            meta: type_meta::<T>(),
        };
        let replaced = ctx
            .inner
            .vars
            .borrow_mut()
            .put(self.id(), self.inherit, Some(entry));
        drop(replaced);
        ctx.run(fut)
    }
}

// ---------------------------------------------------------------------------------------
// Token and ResetError

/// What [`ContextVar::set`] returns: the means to undo that set with [`ContextVar::reset`].
///
/// A token remembers the variable, the context the set was made in, and the value it
/// replaced. It is not a guard: dropping it changes nothing.
pub struct Token<T: 'static> {
    var: u64,
    name: &'static str,
    /// The context of the set; a `Weak` keeps its allocation, so the address cannot be
    /// reused by another context while the token lives.
    context: Weak<Inner>,
    /// The replaced entry; `None` when the variable had no value.
    old: Option<Entry>,
    _type: PhantomData<fn() -> T>,
}

impl<T: 'static> Token<T> {
    /// The value the set replaced: `None` when the variable had no value in that context
    /// (Python's `Token.MISSING`; a default does not count).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
    ///
    /// let first = RETRIES.set(1);
    /// assert_eq!(first.old_value(), None); // no value before; the default does not count
    /// let second = RETRIES.set(2);
    /// assert_eq!(second.old_value(), Some(&1));
    /// ```
    pub fn old_value(&self) -> Option<&T> {
        self.old.as_ref().map(|e| downcast::<T>(&e.value))
    }

    /// The name of the variable that was set.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::new("retries");
    /// assert_eq!(RETRIES.set(1).var_name(), "retries");
    /// ```
    pub fn var_name(&self) -> &'static str {
        self.name
    }
}

impl<T: 'static> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("var", &self.name)
            .field("had_old_value", &self.old.is_some())
            .finish_non_exhaustive()
    }
}

/// The error of [`ContextVar::reset`]: the token belongs to another variable or another
/// context. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetError {
    var: &'static str,
    kind: ResetErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ResetErrorKind {
    OtherVar { token_var: &'static str },
    OtherContext,
}

impl ResetError {
    /// The name of the variable whose `reset` failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static A: ContextVar<u32> = ContextVar::new("a");
    /// static B: ContextVar<u32> = ContextVar::new("b");
    ///
    /// let token = A.set(1);
    /// let err = B.reset(token).unwrap_err();
    /// assert_eq!(err.var_name(), "b"); // the variable being reset, not the token's
    /// ```
    pub fn var_name(&self) -> &'static str {
        self.var
    }

    /// Whether the token came from a `set` of another variable.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::ContextVar;
    ///
    /// static A: ContextVar<u32> = ContextVar::new("a");
    /// static B: ContextVar<u32> = ContextVar::new("b");
    ///
    /// let token = A.set(1);
    /// let err = B.reset(token).unwrap_err();
    /// assert!(err.is_other_var());
    /// assert!(!err.is_other_context());
    /// assert_eq!(A.get(), Some(1)); // nothing changed
    /// ```
    pub fn is_other_var(&self) -> bool {
        matches!(self.kind, ResetErrorKind::OtherVar { .. })
    }

    /// Whether the token came from a `set` made in another context.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{Context, ContextVar};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let ctx = Context::new();
    /// let token = ctx.run_sync(|| USER.set("ada"));
    /// let err = USER.reset(token).unwrap_err(); // outside `ctx`
    /// assert!(err.is_other_context());
    /// assert!(!err.is_other_var());
    /// assert_eq!(ctx.get(&USER), Some("ada")); // nothing changed
    /// ```
    pub fn is_other_context(&self) -> bool {
        self.kind == ResetErrorKind::OtherContext
    }
}

impl fmt::Display for ResetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let var = self.var;
        match self.kind {
            ResetErrorKind::OtherVar { token_var } => write!(
                f,
                "cannot reset context variable `{var}` with a token from a set of \
                 `{token_var}`: pass the token returned by `{var}.set`"
            ),
            ResetErrorKind::OtherContext => write!(
                f,
                "cannot reset context variable `{var}`: the token was created in another \
                 context; reset it in the task or `Context::run` that called `set`"
            ),
        }
    }
}

impl Error for ResetError {}
