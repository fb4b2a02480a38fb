//! Per-device synchronisation: the pure planner and the policy/subscription computations it consumes.

pub mod planner;
pub mod policy;

pub use planner::{next_step, Current, Known, Progress, Reported, Step, NO_COMMANDS};
