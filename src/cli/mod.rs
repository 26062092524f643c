//! The command line: global flags, the subcommand list and dispatch.
//! Each subcommand lives in its own module under [`crate::commands`], with its clap
//! `Args` whose doc comments are the `--help` text.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;

pub mod target;

/// GitOps for Meltano projects: declare deployments, schedules and secrets in cloud.yml,
/// then plan and apply them against a Meltano Cloud control plane.
#[derive(Debug, Parser)]
#[command(
    name = "meltano-cloud",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Run as if started in DIR.
    #[arg(short = 'C', long = "chdir", value_name = "DIR", global = true)]
    pub chdir: Option<PathBuf>,

    /// Path of the cloud.yml file.
    #[arg(long, value_name = "PATH", default_value = "cloud.yml", global = true)]
    pub file: PathBuf,

    /// When to use colors.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    /// Print only errors and the essential result.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more detail; repeat for even more.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Control plane URL, or `local` for the embedded control plane.
    #[arg(long, env = "MELTANO_CLOUD_API_URL", value_name = "URL", global = true)]
    pub api_url: Option<String>,

    /// API token (prefer the environment variable or `login`).
    #[arg(
        long,
        env = "MELTANO_CLOUD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,

    /// Organization name, e.g. `acme`.
    #[arg(long, env = "MELTANO_CLOUD_ORG", value_name = "ORG", global = true)]
    pub org: Option<String>,

    /// Control-plane project name or id (default: cloud.yml's `project`; for the
    /// original-CLI commands, the one chosen with `project use` comes first).
    #[arg(
        long,
        env = "MELTANO_CLOUD_PROJECT",
        value_name = "PROJECT",
        global = true
    )]
    pub project: Option<String>,

    /// Path of the settings file written by `login`.
    #[arg(
        long,
        env = "MELTANO_CLOUD_CONFIG_PATH",
        value_name = "PATH",
        global = true
    )]
    pub config_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // GitOps
    Validate(commands::validate::Args),
    Plan(commands::plan::Args),
    Apply(commands::apply::Args),
    Show(commands::show::Args),
    Import(commands::import::Args),
    ForceUnlock(commands::force_unlock::Args),
    Init(commands::init::Args),
    Schema(commands::schema::Args),
    /// Check or list the secrets cloud.yml references.
    #[command(subcommand)]
    Secrets(commands::secrets::Command),
    // Control plane
    Server(commands::server::Args),
    Admin(commands::admin::Args),
    // The original Meltano Cloud CLI
    Login(commands::login::Args),
    Logout(commands::logout::Args),
    /// List, select and create projects.
    #[command(subcommand)]
    Project(commands::project::Command),
    /// List, select, create, update and delete deployments.
    #[command(subcommand)]
    Deployment(commands::deployment::Command),
    /// List, describe, enable and disable schedules.
    #[command(subcommand)]
    Schedule(commands::schedule::Command),
    /// Set, list and delete the project's secrets (environment variables of runs).
    #[command(subcommand)]
    Config(commands::config::Command),
    Run(commands::run::Args),
    History(commands::history::Args),
    /// Print the logs of an execution.
    #[command(subcommand)]
    Logs(commands::logs::Command),
    /// Stop running executions.
    #[command(subcommand)]
    Job(commands::job::Command),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Server(_)) {
        restore_default_sigpipe();
    }
    if let Some(dir) = &cli.global.chdir {
        if let Err(err) = std::env::set_current_dir(dir) {
            eprintln!("error: cannot change to directory {}: {err}", dir.display());
            return ExitCode::from(1);
        }
    }
    crate::render::style::init(cli.global.color);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(report) => {
            crate::render::github::annotate_report(&report);
            eprintln!("{report:?}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> miette::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Validate(args) => commands::validate::run(g, args).await,
        Command::Plan(args) => commands::plan::run(g, args).await,
        Command::Apply(args) => commands::apply::run(g, args).await,
        Command::Show(args) => commands::show::run(g, args).await,
        Command::Import(args) => commands::import::run(g, args).await,
        Command::ForceUnlock(args) => commands::force_unlock::run(g, args).await,
        Command::Init(args) => commands::init::run(g, args).await,
        Command::Schema(args) => commands::schema::run(g, args).await,
        Command::Secrets(cmd) => commands::secrets::run(g, cmd).await,
        Command::Server(args) => commands::server::run(g, args).await,
        Command::Admin(args) => commands::admin::run(g, args).await,
        Command::Login(args) => commands::login::run(g, args).await,
        Command::Logout(args) => commands::logout::run(g, args).await,
        Command::Project(cmd) => commands::project::run(g, cmd).await,
        Command::Deployment(cmd) => commands::deployment::run(g, cmd).await,
        Command::Schedule(cmd) => commands::schedule::run(g, cmd).await,
        Command::Config(cmd) => commands::config::run(g, cmd).await,
        Command::Run(args) => commands::run::run(g, args).await,
        Command::History(args) => commands::history::run(g, args).await,
        Command::Logs(cmd) => commands::logs::run(g, cmd).await,
        Command::Job(cmd) => commands::job::run(g, cmd).await,
    }
}

/// Rust ignores SIGPIPE, so `meltano-cloud show plan | head` would end in a "Broken pipe"
/// error; a command-line tool should instead stop quietly like any other Unix filter.
/// The server keeps ignoring it: a closed log pipe must not take the control plane down.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread exists; only resets a disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
