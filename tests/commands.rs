//! Tests of the API client and of the commands of the original CLI (login, project,
//! deployment, schedule, config env, run, history, logs, job).

mod commands {
    pub mod client;
}
