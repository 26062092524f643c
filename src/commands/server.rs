use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use miette::miette;

use crate::cli::GlobalArgs;
use crate::server::simulate::{Simulation, parse_duration, parse_faults};
use crate::server::{AppState, ServerConfig};
use crate::store::crypto::KeySource;
use crate::store::{DbTarget, Store, StoreError};

/// Where a control plane keeps its state; shared by `server` and `admin`, which must open the
/// same database and key.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Database: a SQLite file path or sqlite://PATH, or postgres://USER:PASSWORD@HOST/DB
    /// [default: meltano-cloud.db in the data dir]
    #[arg(
        long,
        env = "MELTANO_CLOUD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Folder for the server's files: git mirrors, the key file with PostgreSQL, run work
    /// dirs [default: the platform data dir, e.g. ~/.local/share/meltano-cloud]
    #[arg(
        long,
        env = "MELTANO_CLOUD_DATA_DIR",
        value_name = "DIR",
        hide_env_values = true
    )]
    pub data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The data dir and the database inside or beside it.
    pub fn resolve(&self) -> miette::Result<(PathBuf, DbTarget)> {
        let dir = data_dir(self.data_dir.clone());
        let target = database_target(self.database_url.as_deref(), &dir)?;
        Ok((dir, target))
    }
}

/// Run the control plane: the Meltano Cloud API v1 and the GitOps extensions over HTTP.
///
/// State lives in SQLite (a file, created with its schema on first start) or PostgreSQL.
/// Secret values are encrypted with the server key from MELTANO_CLOUD_SERVER_KEY, or from a
/// key file created (mode 0600) beside the SQLite file or in the data dir on first start.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (the line `listening on ...` tells which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Print the OpenAPI 3.1 document of the API and exit.
    #[arg(long)]
    pub print_openapi: bool,

    /// Format of the log lines on stderr.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Test knob: add this latency to every request, e.g. 50ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub simulate_latency: Option<Duration>,

    /// Test knob: fail matching requests at a rate, e.g. 'PUT:/schedules/*=0.2'
    /// (answer 503 or drop the connection; `=0.2@503` or `=0.2@drop` picks one;
    /// several rules comma-separated).
    #[arg(long, value_name = "RULES")]
    pub simulate_faults: Option<String>,

    #[command(flatten)]
    pub runner: crate::runner::RunnerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The data dir: the flag, else the platform data dir, else `./.meltano-cloud`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| dirs::data_dir().map(|d| d.join("meltano-cloud")))
        .unwrap_or_else(|| PathBuf::from(".meltano-cloud"))
}

/// The database: the flag, else `meltano-cloud.db` in the data dir.
pub fn database_target(url: Option<&str>, data_dir: &std::path::Path) -> miette::Result<DbTarget> {
    match url {
        Some(u) => DbTarget::parse(u).map_err(|e| {
            miette!(
                code = "server::database_url",
                help = "use a file path, sqlite:///abs/path.db or postgres://user:password@host:5432/db",
                "{e}"
            )
        }),
        None => Ok(DbTarget::sqlite(&data_dir.join("meltano-cloud.db"))),
    }
}

/// Opens and migrates the database, with a clear diagnostic when it cannot.
pub async fn open_store(target: &DbTarget) -> miette::Result<Store> {
    tracing::info!("connecting to {}", target.redacted());
    Store::open(target).await.map_err(|e| match e {
        StoreError::Connect(detail) => miette!(
            code = "store::connect",
            help = "is PostgreSQL running and reachable at that host and port? \
                    check --database-url (MELTANO_CLOUD_DATABASE_URL), the user and the password",
            "{detail}"
        ),
        e => miette!(
            code = "server::database",
            help = "check --database-url (MELTANO_CLOUD_DATABASE_URL) and that the database is reachable",
            "cannot open the database {}: {e}",
            target.redacted()
        )
    })
}

/// Loads the server key and checks it against the database.
pub async fn attach_key(
    store: Store,
    target: &DbTarget,
    data_dir: &std::path::Path,
) -> miette::Result<Store> {
    let source = KeySource::from_env_or_file(target.default_key_file(data_dir));
    store.with_key(&source).await.map_err(|e| match e {
        StoreError::Key(detail) => miette!(
            code = "server::key",
            help = "set MELTANO_CLOUD_SERVER_KEY to the key this database was first started with, or restore its key file",
            "{detail}"
        ),
        other => miette!(code = "server::database", "{other}"),
    })
}

fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "info,sqlx=warn",
        1 => "debug,sqlx=warn,hyper=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        // Its report of a failed write is an eprintln!, which panics on a closed stderr.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    if args.print_openapi {
        print!("{}", crate::server::openapi::to_json());
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(global.verbose, args.log_format);
    let faults = match &args.simulate_faults {
        Some(rules) => parse_faults(rules).map_err(|e| {
            miette!(
                code = "server::simulate_faults",
                help = "write rules as METHOD:/path/glob=RATE, e.g. 'PUT:/schedules/*=0.2'",
                "{e}"
            )
        })?,
        None => Vec::new(),
    };
    let simulate = Simulation {
        latency: args.simulate_latency,
        faults,
    };
    let (data_dir, target) = args.store.resolve()?;
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        miette!(
            code = "server::data_dir",
            help = "pass --data-dir with a writable folder",
            "cannot create the data dir {}: {e}",
            data_dir.display()
        )
    })?;
    let store = open_store(&target).await?;
    let store = attach_key(store, &target, &data_dir).await?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| {
            miette!(
                code = "server::listen",
                help = "choose another address with --listen, e.g. 127.0.0.1:0 for any free port",
                "cannot listen on {}: {e}",
                args.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| miette!(code = "server::listen", "{e}"))?;
    if simulate.is_active() {
        tracing::warn!(
            latency = ?simulate.latency,
            faults = ?simulate.faults.iter().map(|f| format!("{}={}", f.pattern, f.rate)).collect::<Vec<_>>(),
            "simulating a slow or flaky network"
        );
    }
    let config = ServerConfig {
        data_dir,
        database: target.redacted(),
        simulate,
    };
    tracing::info!(database = %config.database, data_dir = %config.data_dir.display(), "control plane starting");
    let mut state = AppState::new(store.clone(), config);
    let runner = args
        .runner
        .start(&store, state.git.clone(), &state.config.data_dir)
        .await
        .map_err(|e| miette!(code = "server::runner", "cannot start the runner: {e}"))?;
    state.runner = Some(runner.clone());
    // Not eprintln!: a closed stderr must not stop the server.
    let _ = writeln!(std::io::stderr(), "listening on http://{addr}");
    let served = crate::server::serve(listener, state, crate::server::shutdown_signal()).await;
    runner.shutdown().await;
    served.map_err(|e| miette!(code = "server::serve", "the server stopped: {e}"))?;
    store.close().await;
    tracing::info!("control plane stopped");
    Ok(ExitCode::SUCCESS)
}
