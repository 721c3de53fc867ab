//! The workloads on trellis. (Filled in as the runtime's API lands.)

use crate::measure::Report;
use crate::workload::Workload;

/// Runs `w` at size `n` (see [`crate::workload::run`]); `None` while the API it needs is
/// not there.
pub fn run(w: Workload, n: usize) -> Option<Report> {
    let _ = (w, n);
    None
}
