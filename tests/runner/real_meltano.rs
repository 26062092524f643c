//! One run of the real meltano ($MELTANO_BIN) on examples/hello-pipeline.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn hello_pipeline_runs_with_the_real_meltano() {
    let meltano = tool("MELTANO_BIN");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-pipeline");
    let files: Vec<(String, String)> = ["meltano.yml", "greet.py", "cloud.yml"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(example.join(f)).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let world = World::new(&refs);
    let db = world.sqlite_url();
    let tenant = Arc::new(bootstrap(&db, &world));
    let server = Server::start(
        &db,
        &world.path("data"),
        &["--meltano-bin", &meltano, "--no-scheduler"],
    );
    let api = Api::new(&server, tenant);
    api.deploy("production", "prod").await;
    api.set_secret("HELLO_NAME", "Ada").await;

    // Started, followed and listed with the CLI, as a user would.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .current_dir(world.dir.path())
            .env("MELTANO_CLOUD_API_URL", &server.url)
            .env("MELTANO_CLOUD_TOKEN", &api.t.token)
            .env("MELTANO_CLOUD_ORG", &api.t.org)
            .env("MELTANO_CLOUD_PROJECT", &api.t.pid)
            .env("MELTANO_CLOUD_CONFIG_PATH", world.path("settings.json"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}:\n{stdout}\n{stderr}");
        stdout
    };
    let started = cli(&["run", "say-hello", "--deployment", "production"]);
    let id = started
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 32)
        .unwrap_or_else(|| panic!("no execution id in {started:?}"))
        .to_owned();
    let followed = cli(&["logs", "print", "--execution-id", &id, "--follow"]);
    assert!(
        followed.contains("hello, Ada, from the prod environment"),
        "{followed}"
    );
    let history = cli(&["history", "--deployment", "production"]);
    let row = history.lines().find(|l| l.contains(&id));
    assert!(row.is_some_and(|r| r.contains("Success")), "{history}");
    let e = api.wait_end(&id, Duration::from_secs(300)).await;
    let msgs = api.log_messages(&id).await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}\n{}", msgs.join("\n"));
    assert!(
        msgs.iter()
            .any(|m| m.contains("hello, Ada, from the prod environment")),
        "{}",
        msgs.join("\n")
    );
    assert!(
        !server.logs().contains("Ada"),
        "the secret is in the server log"
    );
}
