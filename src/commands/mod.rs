//! One module per subcommand: its clap arguments (the doc comments are the --help text)
//! and its `run` function.

pub mod admin;
pub mod apply;
pub mod config;
pub mod deployment;
pub mod force_unlock;
pub mod history;
pub mod import;
pub mod init;
pub mod job;
pub mod login;
pub mod logout;
pub mod logs;
pub mod plan;
pub mod project;
pub mod run;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod server;
pub mod show;
pub mod validate;
