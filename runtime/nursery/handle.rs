//! [`Nursery`]: the handle a nursery gives its body (and `spawn_with` children), to start
//! children and to cancel the nursery.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::rc::Rc;

use super::children::{ChildFuture, Shared};
use crate::instrument::label::TaskLabel;
use crate::nursery::error::StartError;
use crate::nursery::join::{Child, JoinHandle, JoinSender, JoinSlot};
use crate::nursery::output::TaskOutput;
use crate::nursery::start::TaskStatus;
use crate::scope::cancel_scope::CancelScope;

/// The handle of a running nursery, given to its body and to children started with
/// [`spawn_with`](Nursery::spawn_with).
///
/// `'s` is the scope brand: it is invariant and chosen by the nursery for each call, so
/// the handle (and every [`JoinHandle`] it makes) cannot leave the closure it was given to.
/// `'env` is what children may borrow: anything that outlives the `nursery(..)` call.
/// `E` is the error type of the body and of every child.
pub struct Nursery<'s, 'env, E> {
    pub(super) shared: Rc<Shared<'env, E>>,
    pub(super) _brand: PhantomData<fn(&'s ()) -> &'s ()>,
}

impl<E> fmt::Debug for Nursery<'_, '_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nursery")
            .field("children", &self.shared.tasks.borrow().len())
            .field("spawned", &self.shared.spawned.get())
            .field("scope", &CancelScope::from_node(self.shared.node.clone()))
            .finish()
    }
}

impl<'s, 'env, E: 'env> Nursery<'s, 'env, E> {
    fn handle<'c>(&self) -> Nursery<'c, 'env, E> {
        Nursery {
            shared: self.shared.clone(),
            _brand: PhantomData,
        }
    }

    /// Starts a child. It runs concurrently with the body and its siblings until it
    /// finishes, fails, or the nursery is cancelled.
    ///
    /// The child may borrow anything that outlives the `nursery(..)` call (`'env`), but not
    /// the handle nor locals of the body: a child that spawns siblings uses
    /// [`spawn_with`](Nursery::spawn_with).
    ///
    /// # Cancellation
    ///
    /// The child is dropped at its next suspension once the nursery (or an enclosing scope)
    /// is cancelled, unless it holds a shield. A child spawned into a cancelled nursery
    /// still runs to its first suspension, like every unit: code that does not await is
    /// never interrupted.
    ///
    /// # Examples
    ///
    /// ```
    /// let names = vec!["ada", "grace"];
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         for name in &names {
    ///             n.spawn(async move { println!("hello, {name}") });
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn spawn<F, O>(&self, fut: F) -> JoinHandle<'s, O::Value>
    where
        F: Future<Output = O> + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
    {
        self.spawn_labelled(fut, TaskLabel::at(Location::caller()))
    }

    /// [`spawn`](Nursery::spawn) with a name for the task: errors, cancel reasons,
    /// instruments and [`dump_tree`](crate::dump_tree) show it (a child spawned with
    /// `spawn` is known by its number and spawn site). The name costs one small allocation
    /// (a `String` is kept as it is); an unnamed child, none.
    ///
    /// # Examples
    ///
    /// ```
    /// let group = trellis::run(trellis::nursery(async |n| {
    ///     for user in [7, 8] {
    ///         n.spawn_named(format!("fetch user {user}"), async move {
    ///             if user == 8 { Err("not found") } else { Ok(()) }
    ///         });
    ///     }
    ///     Ok(())
    /// }))
    /// .unwrap_err();
    /// assert_eq!(group.to_string(), "child 2 \"fetch user 8\" failed: not found");
    /// ```
    #[track_caller]
    pub fn spawn_named<N, F, O>(&self, name: N, fut: F) -> JoinHandle<'s, O::Value>
    where
        N: Into<Cow<'static, str>>,
        F: Future<Output = O> + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
    {
        self.spawn_labelled(fut, TaskLabel::named(name, Location::caller()))
    }

    fn spawn_labelled<F, O>(&self, fut: F, label: TaskLabel) -> JoinHandle<'s, O::Value>
    where
        F: Future<Output = O> + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
    {
        let slot = JoinSlot::new();
        let child = Child::new(fut, JoinSender(slot.clone()));
        let number = self.shared.insert(Box::pin(child), label);
        JoinHandle::new(slot, number)
    }

    /// Starts a child without a [`JoinHandle`] (Trio's `start_soon`): for children whose
    /// value nobody awaits. It behaves exactly as [`spawn`](Nursery::spawn) otherwise, and
    /// costs one allocation less (the child's future is the only one in the steady state).
    ///
    /// # Examples
    ///
    /// ```
    /// let hits = std::cell::Cell::new(0);
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         for _ in 0..100 {
    ///             n.start_soon(async { hits.set(hits.get() + 1) });
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// assert_eq!(hits.get(), 100);
    /// ```
    #[track_caller]
    pub fn start_soon<F, O>(&self, fut: F)
    where
        F: Future<Output = O> + 'env,
        O: TaskOutput<E>,
    {
        let child: Child<F, (), E> = Child::new(fut, ());
        self.shared
            .insert(Box::pin(child), TaskLabel::at(Location::caller()));
    }

    /// Starts a child that receives its own handle to this nursery, so that it can spawn
    /// siblings.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let count = std::cell::Cell::new(0);
    ///     trellis::nursery(async |n| {
    ///         n.spawn_with(async |n| {
    ///             count.set(count.get() + 1);
    ///             n.spawn(async { count.set(count.get() + 1) });
    ///         });
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(count.get(), 2);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_with<F, O>(&self, f: F) -> JoinHandle<'s, O::Value>
    where
        F: for<'c> AsyncFnOnce(Nursery<'c, 'env, E>) -> O + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
    {
        let handle: Nursery<'env, 'env, E> = self.handle();
        self.spawn(f(handle))
    }

    /// Starts a child and waits until it reports that it is ready (Trio's
    /// `nursery.start`): returns the value the child passes to [`TaskStatus::started`]; after
    /// that the child keeps running in this nursery.
    ///
    /// # Errors
    ///
    /// [`StartError`] when the child fails or finishes before calling `started`; a child's
    /// panic before `started` is resumed here. Either way the nursery is not affected, unless
    /// the `start` future is dropped before it returns the failure: then the failure is the
    /// nursery's, so it is never lost.
    ///
    /// # Cancellation
    ///
    /// Dropping the `start` future before the child is ready cancels the child (it was
    /// started on the caller's behalf) as [`JoinHandle::cancel`] does: it is dropped at its
    /// next suspension, after any shielded part inside it has finished, and a failure from
    /// then on is the nursery's. After `started`, the child belongs to the nursery.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         let port = n
    ///             .start(async |_n, status| {
    ///                 status.started(8080_u16); // e.g. the port a server bound
    ///                 // ... serve ...
    ///                 Ok(())
    ///             })
    ///             .await
    ///             .map_err(|e| e.to_string())?;
    ///         assert_eq!(port, 8080);
    ///         Ok::<_, String>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn start<F, V, O>(&self, f: F) -> impl Future<Output = Result<V, StartError<E>>>
    where
        F: for<'c> AsyncFnOnce(Nursery<'c, 'env, E>, TaskStatus<V>) -> O + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
        V: 'env,
    {
        // Not an `async fn`, so that `#[track_caller]` sees the caller.
        crate::nursery::start::start(self, f, TaskLabel::at(Location::caller()))
    }

    /// [`start`](Nursery::start) with a name for the child, as
    /// [`spawn_named`](Nursery::spawn_named) gives one: errors, cancel reasons, a
    /// [`StartError`], instruments and the task tree show it.
    ///
    /// # Errors
    ///
    /// As [`start`](Nursery::start): [`StartError`] (which names the child) when the child
    /// fails or finishes before calling `started`.
    ///
    /// # Cancellation
    ///
    /// As [`start`](Nursery::start): dropping the future before the child is ready cancels
    /// the child (after its shielded parts), and a failure from then on is the nursery's.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         let port = n
    ///             .start_named("listener", async |_n, status| {
    ///                 status.started(8080_u16);
    ///                 Ok(())
    ///             })
    ///             .await
    ///             .map_err(|e| e.to_string())?;
    ///         assert_eq!(port, 8080);
    ///         Ok::<_, String>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn start_named<N, F, V, O>(
        &self,
        name: N,
        f: F,
    ) -> impl Future<Output = Result<V, StartError<E>>>
    where
        N: Into<Cow<'static, str>>,
        F: for<'c> AsyncFnOnce(Nursery<'c, 'env, E>, TaskStatus<V>) -> O + 'env,
        O: TaskOutput<E>,
        O::Value: 'env,
        V: 'env,
    {
        let label = TaskLabel::named(name, Location::caller());
        crate::nursery::start::start(self, f, label)
    }

    /// Spawns a type-erased child labelled `label`, and reports its number (used by
    /// `start`).
    pub(crate) fn spawn_erased(&self, fut: ChildFuture<'env, E>, label: TaskLabel) -> u64 {
        self.shared.insert(fut, label)
    }

    pub(crate) fn fresh_handle(&self) -> Nursery<'env, 'env, E> {
        self.handle()
    }
}
