//! Test bodies, each run on SQLite and on PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ServerOptions, Store, TestRepo, TestServer, client};

fn start(store: Store) -> TestServer {
    TestServer::start(store, ServerOptions::default())
}

pub async fn deploy_enable_snapshot(store: Store) {
    let repo = TestRepo::new();
    let server = start(store);
    let (org, pid, token) = server.bootstrap(&repo);
    let http = client(&token);
    let base = server.url();

    let r = http
        .post(format!("{base}/deployments/v1/{org}/{pid}/production"))
        .json(&json!({"environment_name": "prod", "git_rev": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["git_rev_hash"], repo.head());

    let r = http
        .put(format!(
            "{base}/schedules/v1/{org}/{pid}/production/daily-refresh/enabled"
        ))
        .json(&true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let snap: Value = http
        .get(format!("{base}/gitops/v1/{org}/{pid}/snapshot"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snap["revision"], 2);
    let schedules = &snap["deployments"][0]["schedules"];
    assert_eq!(schedules[0]["schedule_name"], "daily-refresh");
    assert_eq!(schedules[0]["enabled"], true);
    assert_eq!(schedules[1]["schedule_name"], "hourly-sync");
    assert_eq!(schedules[1]["enabled"], false);
}
