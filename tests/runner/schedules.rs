//! The scheduler with time injected through `--clock-file`: fires once, survives a crash,
//! and fires once with two replicas on one PostgreSQL database.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::common::*;

/// The first top of the hour after now, plus a few seconds.
fn next_hour() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap()
        + TimeDelta::hours(1)
        + TimeDelta::seconds(5)
}

fn count(executions: &[serde_json::Value], schedule: &str) -> usize {
    executions
        .iter()
        .filter(|e| e["schedule_name"] == schedule)
        .count()
}

/// Kills what a crashed server left running of a `hang` run (its own process group).
fn kill_leftovers(world: &World) {
    if let Ok(pid) = std::fs::read_to_string(world.path("bin/leader.pid")) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // SAFETY: signals a process group the test started; nothing else.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

fn scheduler_args<'a>(world_meltano: &'a str, clock: &'a str, tick: &'a str) -> Vec<&'a str> {
    vec![
        "--meltano-bin",
        world_meltano,
        "--clock-file",
        clock,
        "--scheduler-tick",
        tick,
        "--stop-grace",
        "1s",
    ]
}

#[tokio::test]
async fn a_due_schedule_fires_once_and_once_schedules_run_once() {
    let world = World::stand_in();
    world.set_clock(Utc::now());
    let db = world.sqlite_url();
    let tenant = Arc::new(bootstrap(&db, &world));
    let (meltano, clock) = (world.meltano(), world.clock_file());
    let server = Server::start(
        &db,
        &world.path("data"),
        &scheduler_args(&meltano, &clock, "100ms"),
    );
    let api = Api::new(&server, tenant);
    api.deploy("production", "prod").await;
    api.enable("production", "hourly-ok", true).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        api.executions().await.is_empty(),
        "nothing is due before the hour"
    );

    let hour = next_hour();
    world.set_clock(hour);
    eventually("the hourly run", Duration::from_secs(20), || async {
        count(&api.executions().await, "hourly-ok") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all = api.executions().await;
    assert_eq!(count(&all, "hourly-ok"), 1, "fired twice: {all:?}");
    let id = all[0]["execution_id"].as_str().unwrap().to_owned();
    let e = api.wait_end(&id, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(e["job_name"], "ok");

    // Three hours later: one catch-up run, not three.
    world.set_clock(hour + TimeDelta::hours(3));
    eventually("the next run", Duration::from_secs(20), || async {
        count(&api.executions().await, "hourly-ok") == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(count(&api.executions().await, "hourly-ok"), 2);

    // @once runs once after enabling; disabling stops the hourly runs.
    api.enable("production", "hourly-ok", false).await;
    api.enable("production", "once-ok", true).await;
    eventually("the @once run", Duration::from_secs(20), || async {
        count(&api.executions().await, "once-ok") == 1
    })
    .await;
    world.set_clock(hour + TimeDelta::hours(5));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all = api.executions().await;
    assert_eq!(count(&all, "once-ok"), 1, "{all:?}");
    assert_eq!(count(&all, "hourly-ok"), 2, "{all:?}");
}

#[tokio::test]
async fn a_restart_neither_runs_an_occurrence_twice_nor_leaves_runs_running() {
    let world = World::stand_in();
    world.set_clock(Utc::now());
    let db = world.sqlite_url();
    let tenant = Arc::new(bootstrap(&db, &world));
    let (meltano, clock) = (world.meltano(), world.clock_file());
    let args = scheduler_args(&meltano, &clock, "100ms");
    let server = Server::start(&db, &world.path("data"), &args);
    let api = Api::new(&server, tenant.clone());
    api.deploy("production", "prod").await;
    api.enable("production", "hourly-hang", true).await;
    let hour = next_hour();
    world.set_clock(hour);
    eventually("the hourly run", Duration::from_secs(20), || async {
        count(&api.executions().await, "hourly-hang") == 1
    })
    .await;
    let first = api.executions().await[0]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the run is under way", Duration::from_secs(20), || async {
        world.path("bin/child.pid").exists()
    })
    .await;
    server.crash();
    kill_leftovers(&world);
    let work_dir = world.path("data/runs").join(&first);
    assert!(work_dir.is_dir(), "the run's work dir {work_dir:?}");

    let server = Server::start(&db, &world.path("data"), &args);
    let api = Api::new(&server, tenant);
    assert!(
        !work_dir.exists(),
        "the crashed run's work dir is left behind"
    );
    let e = api.execution(&first).await;
    assert_eq!(e["status"], "FAILED", "left running after a crash: {e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .contains("stopped before it ended"),
        "{e}"
    );
    let msgs = api.log_messages(&first).await;
    assert!(
        msgs.iter().any(|m| m.contains("stopped before it ended")),
        "{msgs:?}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        count(&api.executions().await, "hourly-hang"),
        1,
        "the occurrence ran again"
    );

    // The next occurrence runs; the one after, while it still runs, is skipped.
    std::fs::remove_file(world.path("bin/child.pid")).unwrap();
    world.set_clock(hour + TimeDelta::hours(1));
    eventually("the next run", Duration::from_secs(20), || async {
        count(&api.executions().await, "hourly-hang") == 2
    })
    .await;
    world.set_clock(hour + TimeDelta::hours(2));
    eventually("the skipped run", Duration::from_secs(20), || async {
        api.executions()
            .await
            .iter()
            .any(|e| e["status"] == "SKIPPED")
    })
    .await;
    let all = api.executions().await;
    assert_eq!(count(&all, "hourly-hang"), 3, "{all:?}");
    let skipped = all.iter().find(|e| e["status"] == "SKIPPED").unwrap();
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("still running"),
        "{skipped}"
    );
    assert_eq!(
        all.iter().filter(|e| e["status"] == "RUNNING").count(),
        1,
        "{all:?}"
    );
    drop(server);
    kill_leftovers(&world);
}

#[tokio::test]
async fn two_replicas_on_postgres_fire_each_run_once() {
    let pg = PgDb::create().await;
    let world = World::stand_in();
    world.set_clock(Utc::now());
    let tenant = Arc::new(bootstrap(&pg.url, &world));
    let (meltano, clock) = (world.meltano(), world.clock_file());
    let mut args = scheduler_args(&meltano, &clock, "30ms");
    args.extend(["--run-lease-ttl", "1s"]);
    let a = Server::start(&pg.url, &world.path("data-a"), &args);
    let b = Server::start(&pg.url, &world.path("data-b"), &args);
    let api_a = Api::new(&a, tenant.clone());
    let api_b = Api::new(&b, tenant.clone());
    api_a.deploy("production", "prod").await;
    api_a.enable("production", "hourly-ok", true).await;
    api_b.enable("production", "once-ok", true).await;

    let hour = next_hour();
    for n in 0..3 {
        world.set_clock(hour + TimeDelta::hours(n));
        eventually("the hourly run", Duration::from_secs(20), || async {
            count(&api_b.executions().await, "hourly-ok") as i64 == n + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let all = api_a.executions().await;
        assert_eq!(count(&all, "hourly-ok") as i64, n + 1, "{all:?}");
        assert_eq!(count(&all, "once-ok"), 1, "{all:?}");
    }
    // The history filters on PostgreSQL too.
    let hourly = api_b.history("schedule=hourly-*&deployment=prod*").await;
    assert_eq!(hourly["results"].as_array().unwrap().len(), 3, "{hourly}");
    let calls = world.calls().iter().filter(|c| *c == "run ok").count();
    assert_eq!(calls, 4, "the stand-in ran {calls} times");

    // A stop asked of one replica ends a run of the other.
    let id = api_a.run("production", "hang").await;
    eventually("the run is under way", Duration::from_secs(20), || async {
        world.path("bin/child.pid").exists()
    })
    .await;
    let path = format!("/jobs/v1/{}/{}/{id}", tenant.org, tenant.pid);
    let (status, body) = api_b.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "{body}");
    let e = api_a.wait_end(&id, Duration::from_secs(20)).await;
    assert_eq!(e["status"], "STOPPED", "{e}");
    std::fs::remove_file(world.path("bin/child.pid")).unwrap();

    // A replica that dies mid-run: the other marks its run failed once the lease expires.
    let id = api_a.run("production", "hang").await;
    eventually("the run is under way", Duration::from_secs(20), || async {
        world.path("bin/child.pid").exists()
    })
    .await;
    a.crash();
    kill_leftovers(&world);
    let e = api_b.wait_end(&id, Duration::from_secs(20)).await;
    assert_eq!(e["status"], "FAILED", "{e}");
    drop(b);
    pg.drop_db().await;
}

#[tokio::test]
async fn schedule_spread_delays_each_schedule_by_its_constant_offset() {
    let world = World::stand_in();
    world.set_clock(Utc::now());
    let db = world.sqlite_url();
    let tenant = Arc::new(bootstrap(&db, &world));
    let (meltano, clock) = (world.meltano(), world.clock_file());
    let mut args = scheduler_args(&meltano, &clock, "100ms");
    args.push("--schedule-spread");
    let server = Server::start(&db, &world.path("data"), &args);
    let api = Api::new(&server, tenant.clone());
    api.deploy("production", "prod").await;
    api.enable("production", "hourly-ok", true).await;
    let offset =
        meltano_cloud::runner::scheduler::spread_offset_ms(&tenant.pid, "production", "hourly-ok");
    assert!(offset < 7 * 60 * 1000);
    let hour = next_hour() - TimeDelta::seconds(5);
    world.set_clock(hour + TimeDelta::milliseconds(offset) - TimeDelta::seconds(2));
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The occurrence of the current hour fires too when its delayed time came after the
    // schedule was enabled; the next hour's must wait for its offset.
    let before = count(&api.executions().await, "hourly-ok");
    assert!(before <= 1, "{before}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(&api.executions().await, "hourly-ok"),
        before,
        "ran before its offset"
    );
    world.set_clock(hour + TimeDelta::milliseconds(offset) + TimeDelta::seconds(1));
    eventually("the delayed run", Duration::from_secs(20), || async {
        count(&api.executions().await, "hourly-ok") == before + 1
    })
    .await;
}
