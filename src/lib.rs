//! meltano-cloud: GitOps for Meltano projects.
//!
//! Data flows one way through the layers below:
//! [`spec`] loads and validates `cloud.yml` (with [`secrets`] reading sops metadata) into a
//! desired state; [`api`] fetches the actual state from a control plane; [`plan`] diffs the
//! two as a pure function; [`render`] shows the plan and [`apply`] carries it out.
//! [`server`] and [`store`] are the control plane itself, and [`runner`] runs its schedules.

pub mod api;
pub mod apply;
pub mod cli;
pub mod commands;
pub mod gitrepo;
pub mod plan;
pub mod render;
pub mod runner;
pub mod secrets;
pub mod server;
pub mod settings;
pub mod spec;
pub mod store;
