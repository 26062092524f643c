//! Tests of the API client and of the commands of the original CLI (login, project,
//! deployment, schedule, config env, run, history, logs, job).

mod support;

mod commands {
    pub mod cli;
    pub mod client;
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
