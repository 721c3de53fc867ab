//! [`CancelReason`]: why a scope was cancelled. It lives below the engine because the
//! instruments' `scope_cancelled` hook reports it; scopes (`scope/`) set it.

#![forbid(unsafe_code)]

use std::fmt;

/// Why a scope was first cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// [`CancelScope::cancel`](crate::CancelScope::cancel) (or
    /// [`RemoteCancel::cancel`](crate::RemoteCancel::cancel)) was called.
    Explicit,
    /// The scope's deadline passed.
    Deadline,
    /// A task of the nursery that owns the scope failed.
    Failure {
        /// The task that failed, as the nursery names it (`"child 3"`,
        /// `"child 3 \"fetch user\""`, `"the nursery body"`).
        task: String,
    },
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Explicit => f.write_str("cancelled explicitly"),
            CancelReason::Deadline => f.write_str("its deadline passed"),
            CancelReason::Failure { task } => write!(f, "{task} failed"),
        }
    }
}
