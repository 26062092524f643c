//! Runs on demand with the stand-in meltano, on SQLite.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

struct Setup {
    world: World,
    server: Server,
    api: Api,
    args: Vec<String>,
}

async fn setup(extra: &[&str]) -> Setup {
    let world = World::stand_in();
    let db = world.sqlite_url();
    let tenant = Arc::new(bootstrap(&db, &world));
    let meltano = world.meltano();
    let mut args = vec![
        "--meltano-bin",
        meltano.as_str(),
        "--stop-grace",
        "2s",
        "--no-scheduler",
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&db, &world.path("data"), &args);
    let api = Api::new(&server, tenant);
    api.deploy("production", "prod").await;
    let args = args.iter().map(|a| a.to_string()).collect();
    Setup {
        world,
        server,
        api,
        args,
    }
}

#[tokio::test]
async fn run_succeeds_and_its_logs_are_readable_in_order_while_it_runs() {
    let s = setup(&[]).await;
    let id = s.api.run("production", "slow").await;
    assert_eq!(id.len(), 32);

    // While it runs: some ticks are readable, with a token to continue from.
    let mut seen_running = false;
    for _ in 0..100 {
        let e = s.api.execution(&id).await;
        let msgs = s.api.log_messages(&id).await;
        if e["status"] == "RUNNING" && msgs.iter().any(|m| m == "tick 1") {
            let (_, page) = s.api.logs_page(&id, None).await;
            assert!(page["pagination"]["next_page_token"].is_string(), "{page}");
            seen_running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_running, "never saw logs of the running execution");

    let e = s.api.wait_end(&id, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(e["exit_code"], 0);
    assert!(e.get("reason").is_none(), "{e}");
    assert_eq!(e["job_name"], "slow");
    assert_eq!(e["deployment_name"], "production");
    assert!(e["end_time"].is_string());

    let msgs = s.api.log_messages(&id).await;
    let ticks: Vec<&String> = msgs.iter().filter(|m| m.starts_with("tick ")).collect();
    let expected: Vec<String> = (1..=30).map(|i| format!("tick {i}")).collect();
    assert_eq!(ticks, expected.iter().collect::<Vec<_>>());
    assert!(msgs.contains(&"environment=prod".to_owned()), "{msgs:?}");
    // The whole log in one page ends paging: nothing more will come.
    let (_, page) = s.api.logs_page(&id, None).await;
    assert!(page["pagination"].is_null(), "{page}");
    for l in page["results"].as_array().unwrap() {
        assert!(l["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        assert!(l["ingestion_time"].as_i64().unwrap() >= l["timestamp"].as_i64().unwrap());
    }
    // `meltano install` ran once for the commit, then the job.
    assert_eq!(s.world.calls(), vec!["install", "run slow"]);
    let id2 = s.api.run("production", "ok").await;
    s.api.wait_end(&id2, Duration::from_secs(30)).await;
    assert_eq!(s.world.calls(), vec!["install", "run slow", "run ok"]);
}

#[tokio::test]
async fn failure_records_the_exit_code_and_bad_names_are_refused() {
    let s = setup(&[]).await;
    let fail_id = s.api.run("production", "fail").await;
    let e = s.api.wait_end(&fail_id, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["exit_code"], 3);
    assert_eq!(e["reason"], "meltano exited with code 3");
    let msgs = s.api.log_messages(&fail_id).await;
    assert!(msgs.contains(&"something broke".to_owned()), "{msgs:?}");

    let (status, body) = s.api.try_run("production", "no-such-job").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("no-such-job"));
    let (status, body) = s.api.try_run("staging", "ok").await;
    assert_eq!(status, 404, "{body}");

    // A schedule runs by name too; an extractor/loader schedule through `schedule run`.
    let id = s.api.run("production", "minutely-elt").await;
    let e = s.api.wait_end(&id, Duration::from_secs(30)).await;
    assert_eq!(e["schedule_name"], "minutely-elt");
    assert!(
        s.world
            .calls()
            .contains(&"schedule run minutely-elt".to_owned())
    );

    let failed = s.api.history("result=failed").await;
    let results = failed["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{failed}");
    assert_eq!(results[0]["execution_id"], fail_id.as_str());
}

#[tokio::test]
async fn stop_ends_the_whole_process_group() {
    let s = setup(&[]).await;
    let id = s.api.run("production", "hang").await;
    let pid_file = s.world.path("bin/child.pid");
    eventually(
        "the stand-in started its child",
        Duration::from_secs(30),
        || {
            let p = pid_file.clone();
            async move { p.exists() }
        },
    )
    .await;
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(child));

    let path = format!("/jobs/v1/{}/{}/{id}", s.api.t.org, s.api.t.pid);
    let (status, body) = s.api.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["execution_id"], id.as_str());
    let e = s.api.wait_end(&id, Duration::from_secs(10)).await;
    assert_eq!(e["status"], "STOPPED", "{e}");
    assert_eq!(e["reason"], "stopped by request");
    eventually(
        "the child process is gone",
        Duration::from_secs(5),
        || async move { !alive(child) },
    )
    .await;
    let (status, body) = s.api.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = s
        .api
        .call(
            reqwest::Method::DELETE,
            &format!(
                "/jobs/v1/{}/{}/{}",
                s.api.t.org,
                s.api.t.pid,
                "0".repeat(32)
            ),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        s.api.history("result=stopped").await["results"]
            .as_array()
            .unwrap()
            .len()
            == 1
    );
}

#[tokio::test]
async fn a_run_over_the_timeout_fails() {
    let s = setup(&["--run-timeout", "2s"]).await;
    let id = s.api.run("production", "hang").await;
    let e = s.api.wait_end(&id, Duration::from_secs(20)).await;
    assert_eq!(e["status"], "FAILED", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 2s"),
        "{e}"
    );
    let msgs = s.api.log_messages(&id).await;
    assert!(
        msgs.iter().any(|m| m.contains("timed out after 2s")),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn secrets_reach_the_run_but_not_the_server_log() {
    let s = setup(&[]).await;
    s.api.set_secret("HELLO_SECRET", "tr0ub4dor-runner").await;
    let id = s.api.run("production", "secret").await;
    s.api.wait_end(&id, Duration::from_secs(30)).await;
    let msgs = s.api.log_messages(&id).await;
    assert!(
        msgs.contains(&"secret=tr0ub4dor-runner".to_owned()),
        "{msgs:?}"
    );
    let logs = s.server.logs();
    assert!(logs.contains(&id), "the server logs the execution: {logs}");
    assert!(
        !logs.contains("tr0ub4dor-runner"),
        "secret in server log:\n{logs}"
    );
}

#[tokio::test]
async fn history_pages_and_filters() {
    let s = setup(&["--max-concurrent-runs", "1"]).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(s.api.run("production", "ok").await);
    }
    let last = s.api.run("production", "hourly-ok").await;
    for id in ids.iter().chain([&last]) {
        let e = s.api.wait_end(id, Duration::from_secs(30)).await;
        assert_eq!(e["status"], "SUCCEEDED");
    }
    // Newest first, two per page, every execution once.
    let mut seen = Vec::new();
    let mut query = "page_size=2".to_owned();
    loop {
        let page = s.api.history(&query).await;
        let results = page["results"].as_array().unwrap();
        assert!(results.len() <= 2);
        seen.extend(
            results
                .iter()
                .map(|e| e["execution_id"].as_str().unwrap().to_owned()),
        );
        match page["pagination"]["next_page_token"].as_str() {
            Some(t) => query = format!("page_size=2&page_token={t}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = ids.clone();
    expected.push(last.clone());
    expected.reverse();
    assert_eq!(seen, expected);

    let by_schedule = s.api.history("schedule=hourly-*").await;
    let r = by_schedule["results"].as_array().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["execution_id"], last.as_str());
    assert_eq!(
        s.api.history("deployment=prod*").await["results"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert!(
        s.api.history("deployment=staging").await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        s.api.history("start_time=2999-01-01T00:00:00Z").await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.api.history("start_time=2000-01-01").await["results"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let path = format!("/jobs/v1/{}/{}?result=maybe", s.api.t.org, s.api.t.pid);
    assert_eq!(s.api.call(reqwest::Method::GET, &path, None).await.0, 400);
}

async fn wait_for_file(path: &std::path::Path) {
    let p = path.to_path_buf();
    eventually(
        "the stand-in started its child",
        Duration::from_secs(30),
        || {
            let p = p.clone();
            async move { p.exists() }
        },
    )
    .await;
}

#[tokio::test]
async fn runs_beyond_the_concurrency_limit_wait_for_a_slot() {
    let s = setup(&["--max-concurrent-runs", "1"]).await;
    let hang = s.api.run("production", "hang").await;
    wait_for_file(&s.world.path("bin/child.pid")).await;
    let ok = s.api.run("production", "ok").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let e = s.api.execution(&ok).await;
    assert_eq!(e["status"], "RUNNING", "{e}");
    let msgs = s.api.log_messages(&ok).await;
    assert!(
        msgs.iter()
            .any(|m| m.contains("waiting for a free run slot")),
        "{msgs:?}"
    );
    assert!(!s.world.calls().contains(&"run ok".to_owned()));

    let path = format!("/jobs/v1/{}/{}/{hang}", s.api.t.org, s.api.t.pid);
    assert_eq!(
        s.api.call(reqwest::Method::DELETE, &path, None).await.0,
        200
    );
    let e = s.api.wait_end(&ok, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
}

#[tokio::test]
async fn a_server_shutting_down_ends_its_runs_as_failed() {
    let s = setup(&[]).await;
    let id = s.api.run("production", "hang").await;
    wait_for_file(&s.world.path("bin/child.pid")).await;
    let child: i32 = std::fs::read_to_string(s.world.path("bin/child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = s.server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!alive(child), "child {child} survived the shutdown");

    let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
    let server = Server::start(&s.world.sqlite_url(), &s.world.path("data"), &args);
    let api = Api::new(&server, s.api.t.clone());
    let e = api.execution(&id).await;
    assert_eq!(e["status"], "FAILED", "{e}");
    let msgs = api.log_messages(&id).await;
    assert!(
        msgs.iter()
            .any(|m| m.contains("server shut down during the run")),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn roles_and_organizations_apply_to_runs() {
    let s = setup(&[]).await;
    let id = s.api.run("production", "ok").await;
    s.api.wait_end(&id, Duration::from_secs(30)).await;
    let db = s.world.sqlite_url();
    let reader = admin(
        &db,
        &["token", "create", "--org", "acme", "--role", "reader"],
    );
    admin(&db, &["org", "create", "other"]);
    let outsider = admin(
        &db,
        &["token", "create", "--org", "other", "--role", "owner"],
    );
    let as_token = |token: &str| {
        let t = Arc::new(Tenant {
            org: s.api.t.org.clone(),
            pid: s.api.t.pid.clone(),
            token: token.lines().last().unwrap().trim().to_owned(),
        });
        Api::new(&s.server, t)
    };
    let (org, pid) = (&s.api.t.org, &s.api.t.pid);
    let history = format!("/jobs/v1/{org}/{pid}");
    let logs = format!("/logs/v1/{org}/{pid}/tail/{id}");
    let stop = format!("/jobs/v1/{org}/{pid}/{id}");

    let r = as_token(&reader);
    assert_eq!(r.call(reqwest::Method::GET, &history, None).await.0, 200);
    assert_eq!(r.call(reqwest::Method::GET, &logs, None).await.0, 200);
    assert_eq!(r.try_run("production", "ok").await.0, 403);
    assert_eq!(r.call(reqwest::Method::DELETE, &stop, None).await.0, 403);

    let o = as_token(&outsider);
    assert_eq!(o.call(reqwest::Method::GET, &history, None).await.0, 404);
    assert_eq!(o.call(reqwest::Method::GET, &logs, None).await.0, 404);
    assert_eq!(o.try_run("production", "ok").await.0, 404);
    assert_eq!(o.call(reqwest::Method::DELETE, &stop, None).await.0, 404);

    let anonymous = reqwest::Client::new()
        .get(format!("{}{history}", s.server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}
