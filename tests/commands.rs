//! Tests of the API client and of the commands of the original CLI (login, project,
//! deployment, schedule, config env, run, history, logs, job).

mod support;

mod commands {
    pub mod cli;
    pub mod client;
    pub mod local_runs;
    pub mod runs;
    #[cfg(unix)]
    pub mod tty;
}

/// Cases that need no control plane: argument errors, connection refused, missing token.
#[test]
fn cli_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    trycmd::TestCases::new()
        .env("MELTANO_CLOUD_CONFIG_PATH", config.display().to_string())
        .env("NO_COLOR", "1")
        .case("tests/cmd/cli/offline/*.toml");
}

/// `meltano-cloud --help` gives every command, groups included, a description.
#[test]
fn every_command_has_a_description() {
    use clap::CommandFactory;
    let cli = meltano_cloud::cli::Cli::command();
    for sub in cli.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        assert!(
            !about.trim().is_empty(),
            "`{}` has no description in --help",
            sub.get_name()
        );
    }
}

/// `run` in the foreground of the local control plane, as the user reads it.
#[test]
fn cli_local_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let meltano = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cmd/local_runs/stand-in-meltano.sh");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let git = std::env::split_paths(&path)
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH");
    trycmd::TestCases::new()
        .register_bin("git", git)
        .env("MELTANO_CLOUD_CONFIG_PATH", config.display().to_string())
        .env("MELTANO_CLOUD_API_URL", "local")
        .env("MELTANO_CLOUD_MELTANO_BIN", meltano.display().to_string())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .case("tests/cmd/local_runs/*.md");
}
