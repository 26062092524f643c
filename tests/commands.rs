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
