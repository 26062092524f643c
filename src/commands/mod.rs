//! One module per subcommand: its clap arguments (the doc comments are the --help text)
//! and its `run` function.

pub mod validate;
pub mod plan;
pub mod apply;
pub mod show;
pub mod import;
pub mod force_unlock;
pub mod init;
pub mod schema;
pub mod secrets;
pub mod server;
pub mod admin;
pub mod login;
pub mod logout;
pub mod project;
pub mod deployment;
pub mod schedule;
pub mod config;
pub mod run;
pub mod history;
pub mod logs;
pub mod job;
