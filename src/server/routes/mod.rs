//! HTTP routes, one module per area.

pub mod gitops;
pub mod runs;
pub mod v1;
