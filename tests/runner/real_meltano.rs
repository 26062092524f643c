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
    let id = api.run("production", "say-hello").await;
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
