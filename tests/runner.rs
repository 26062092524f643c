//! The runner inside the real `meltano-cloud server`: runs on demand, logs, stop, timeout,
//! the scheduler across restarts and replicas, and one run of the real meltano.

#[path = "runner/common.rs"]
mod common;
#[path = "runner/fast.rs"]
mod fast;
#[path = "runner/real_meltano.rs"]
mod real_meltano;
#[path = "runner/schedules.rs"]
mod schedules;
