//! Apply on a flaky network and under contention, against a real server on 127.0.0.1 run
//! with `--simulate-faults` / `--simulate-latency`: retries converge, failures are reported
//! change by change, nothing non-idempotent is done twice, the lock is released after a
//! failure and freed after a crash, concurrent applies of saved plans end applied or
//! refused as stale, and concurrent fresh applies take turns through the lock. Also runs
//! the scale benchmark at a smoke size so it keeps working.

mod support;

#[path = "../benches/scale/run.rs"]
mod scale;

#[path = "faults/cases.rs"]
mod cases;
