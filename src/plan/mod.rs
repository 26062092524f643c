//! Planning: the desired state, the pure planner that diffs it against the control plane's
//! snapshot, and saved plan files.

pub mod desired;
pub mod git;
pub mod model;
pub mod planner;
pub mod saved;

pub use desired::{DesiredDeployment, DesiredSecret, DesiredState, MeltanoSchedule};
pub use model::*;
pub use planner::{PlanError, PlanOptions, plan};
