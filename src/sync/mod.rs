//! Per-device synchronisation, as pure functions: the planner, the policy and subscription
//! computations it consumes, and what each result of a device writes.

pub mod planner;
pub mod policy;
pub mod result;

pub use planner::{next_step, Current, Known, Progress, Reported, Step, NO_COMMANDS};
pub use result::{SyncResult, SyncWrite};
