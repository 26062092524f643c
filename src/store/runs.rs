//! Executions, their log lines, schedule fires and run leases (tables of
//! `migrations/0002_runs.sql`).
//!
//! Plain SQL over the `Any` pool, in the dialect both SQLite and PostgreSQL accept:
//! `$n` placeholders, BIGINT milliseconds, `ON CONFLICT DO NOTHING`.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{AnyPool, Row};

use crate::api::types::{Execution, LogLine};

pub type Result<T> = std::result::Result<T, sqlx::Error>;

pub const RUNNING: &str = "RUNNING";
pub const SUCCEEDED: &str = "SUCCEEDED";
pub const FAILED: &str = "FAILED";
pub const STOPPED: &str = "STOPPED";
pub const SKIPPED: &str = "SKIPPED";

/// A new row of `executions`.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub execution_id: String,
    pub org: String,
    pub project_id: String,
    pub deployment_name: String,
    pub schedule_name: Option<String>,
    pub job_name: Option<String>,
    pub command: String,
    pub environment_name: String,
    pub git_rev_hash: String,
    pub status: String,
    pub reason: Option<String>,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub runner_id: Option<String>,
}

/// A row of `executions`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub execution_id: String,
    pub org: String,
    pub project_id: String,
    pub deployment_name: String,
    pub schedule_name: Option<String>,
    pub job_name: Option<String>,
    pub command: String,
    pub environment_name: String,
    pub git_rev_hash: String,
    pub status: String,
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub runner_id: Option<String>,
    pub stop_requested: bool,
}

impl ExecutionRow {
    pub fn is_running(&self) -> bool {
        self.status == RUNNING
    }

    pub fn to_api(&self) -> Execution {
        Execution {
            execution_id: self.execution_id.clone(),
            start_time: iso_ms(self.start_ms),
            end_time: self.end_ms.map(iso_ms),
            status: self.status.clone(),
            exit_code: self.exit_code.and_then(|c| i32::try_from(c).ok()),
            deployment_name: self.deployment_name.clone(),
            schedule_name: self.schedule_name.clone(),
            job_name: self.job_name.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// ISO 8601 UTC text of milliseconds since the epoch.
pub fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

const EXECUTION_COLUMNS: &str = "execution_id, org, project_id, deployment_name, schedule_name, \
     job_name, command, environment_name, git_rev_hash, status, reason, exit_code, start_ms, \
     end_ms, runner_id, stop_requested";

fn execution_from_row(row: &sqlx::any::AnyRow) -> Result<ExecutionRow> {
    Ok(ExecutionRow {
        execution_id: row.try_get("execution_id")?,
        org: row.try_get("org")?,
        project_id: row.try_get("project_id")?,
        deployment_name: row.try_get("deployment_name")?,
        schedule_name: row.try_get("schedule_name")?,
        job_name: row.try_get("job_name")?,
        command: row.try_get("command")?,
        environment_name: row.try_get("environment_name")?,
        git_rev_hash: row.try_get("git_rev_hash")?,
        status: row.try_get("status")?,
        reason: row.try_get("reason")?,
        exit_code: row.try_get("exit_code")?,
        start_ms: row.try_get("start_ms")?,
        end_ms: row.try_get("end_ms")?,
        runner_id: row.try_get("runner_id")?,
        stop_requested: row.try_get::<i64, _>("stop_requested")? != 0,
    })
}

pub async fn insert_execution(pool: &AnyPool, e: &NewExecution) -> Result<()> {
    sqlx::query(
        "INSERT INTO executions (execution_id, org, project_id, deployment_name, schedule_name, \
         job_name, command, environment_name, git_rev_hash, status, reason, start_ms, end_ms, \
         runner_id, lease_ms, stop_requested) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $12, 0)",
    )
    .bind(&e.execution_id)
    .bind(&e.org)
    .bind(&e.project_id)
    .bind(&e.deployment_name)
    .bind(e.schedule_name.clone())
    .bind(e.job_name.clone())
    .bind(&e.command)
    .bind(&e.environment_name)
    .bind(&e.git_rev_hash)
    .bind(&e.status)
    .bind(e.reason.clone())
    .bind(e.start_ms)
    .bind(e.end_ms)
    .bind(e.runner_id.clone())
    .execute(pool)
    .await?;
    Ok(())
}

/// One execution of a project (None when it does not exist or belongs to another project).
pub async fn get_execution(
    pool: &AnyPool,
    project_id: &str,
    execution_id: &str,
) -> Result<Option<ExecutionRow>> {
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE project_id = $1 AND execution_id = $2"
    );
    let row = sqlx::query(&sql)
        .bind(project_id)
        .bind(execution_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(execution_from_row).transpose()
}

/// The status of an execution of any project (None when there is no such execution).
pub async fn execution_status(pool: &AnyPool, execution_id: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT status FROM executions WHERE execution_id = $1")
        .bind(execution_id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| r.try_get("status")).transpose()
}

/// Records the end of a running execution. False when it had already ended (for example
/// reaped as orphaned), in which case nothing changes.
pub async fn finish_execution(
    pool: &AnyPool,
    execution_id: &str,
    status: &str,
    exit_code: Option<i64>,
    reason: Option<&str>,
    end_ms: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE executions SET status = $1, exit_code = $2, reason = $3, end_ms = $4 \
         WHERE execution_id = $5 AND status = 'RUNNING'",
    )
    .bind(status)
    .bind(exit_code)
    .bind(reason.map(str::to_owned))
    .bind(end_ms)
    .bind(execution_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Flags a running execution to be stopped by whichever server runs it.
pub async fn request_stop(pool: &AnyPool, execution_id: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE executions SET stop_requested = 1 WHERE execution_id = $1 AND status = 'RUNNING'",
    )
    .bind(execution_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Renews the lease of every execution this server runs, and returns the ones whose stop
/// was requested (possibly through another replica).
pub async fn renew_leases(pool: &AnyPool, runner_id: &str, now_ms: i64) -> Result<Vec<String>> {
    sqlx::query("UPDATE executions SET lease_ms = $1 WHERE runner_id = $2 AND status = 'RUNNING'")
        .bind(now_ms)
        .bind(runner_id)
        .execute(pool)
        .await?;
    let rows = sqlx::query(
        "SELECT execution_id FROM executions \
         WHERE runner_id = $1 AND status = 'RUNNING' AND stop_requested = 1",
    )
    .bind(runner_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| r.try_get("execution_id")).collect()
}

/// Marks FAILED the running executions whose server stopped renewing their lease (it
/// crashed or was killed), and returns their ids. `other_than` protects this server's own.
pub async fn reap_orphans(
    pool: &AnyPool,
    runner_id: &str,
    lease_expired_before_ms: i64,
    now_ms: i64,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT execution_id FROM executions WHERE status = 'RUNNING' \
         AND (runner_id IS NULL OR runner_id <> $1) AND lease_ms < $2",
    )
    .bind(runner_id)
    .bind(lease_expired_before_ms)
    .fetch_all(pool)
    .await?;
    let mut reaped = Vec::new();
    for row in rows {
        let id: String = row.try_get("execution_id")?;
        let reason = "the server running this execution stopped before it ended \
                      (crash or shutdown); its outcome is unknown";
        if finish_execution(pool, &id, FAILED, None, Some(reason), now_ms).await? {
            append_system_line(pool, &id, now_ms, &format!("[meltano-cloud] {reason}")).await?;
            reaped.push(id);
        }
    }
    Ok(reaped)
}

/// The running execution of a schedule, if any (a schedule never overlaps itself).
pub async fn running_for_schedule(
    pool: &AnyPool,
    project_id: &str,
    deployment_name: &str,
    schedule_name: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT execution_id FROM executions WHERE project_id = $1 AND deployment_name = $2 \
         AND schedule_name = $3 AND status = 'RUNNING' ORDER BY start_ms LIMIT 1",
    )
    .bind(project_id)
    .bind(deployment_name)
    .bind(schedule_name)
    .fetch_optional(pool)
    .await?;
    row.map(|r| r.try_get("execution_id")).transpose()
}

/// Filters of the history listing.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Glob on the schedule name (`*` and `?`).
    pub schedule: Option<String>,
    /// Glob on the deployment name.
    pub deployment: Option<String>,
    /// Statuses to keep (empty: all).
    pub statuses: Vec<String>,
    pub start_ms_min: Option<i64>,
}

/// Translates a `*`/`?` glob into a LIKE pattern with `\` as the escape character.
pub fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A page of a project's executions, newest first, and the token of the next page.
/// The token is `<start_ms>.<execution_id>` of the last row (keyset paging, stable while
/// new executions start).
pub async fn list_executions(
    pool: &AnyPool,
    project_id: &str,
    filter: &HistoryFilter,
    page_size: u32,
    after: Option<(i64, String)>,
) -> Result<(Vec<ExecutionRow>, Option<String>)> {
    let mut sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE project_id = $1");
    let mut texts: Vec<String> = Vec::new();
    let mut n = 1;
    // Placeholders are numbered in the order they are bound below.
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if let Some(g) = &filter.schedule {
        sql += &format!(" AND schedule_name LIKE {} ESCAPE '\\'", next());
        texts.push(glob_to_like(g));
    }
    if let Some(g) = &filter.deployment {
        sql += &format!(" AND deployment_name LIKE {} ESCAPE '\\'", next());
        texts.push(glob_to_like(g));
    }
    if !filter.statuses.is_empty() {
        let marks: Vec<String> = filter.statuses.iter().map(|_| next()).collect();
        sql += &format!(" AND status IN ({})", marks.join(", "));
        texts.extend(filter.statuses.iter().cloned());
    }
    let start_mark = filter.start_ms_min.map(|_| next());
    if let Some(m) = &start_mark {
        sql += &format!(" AND start_ms >= {m}");
    }
    let after_marks = after.as_ref().map(|_| (next(), next()));
    if let Some((a, b)) = &after_marks {
        sql += &format!(" AND (start_ms < {a} OR (start_ms = {a} AND execution_id < {b}))");
    }
    sql += &format!(
        " ORDER BY start_ms DESC, execution_id DESC LIMIT {}",
        u64::from(page_size) + 1
    );
    let mut q = sqlx::query(&sql).bind(project_id);
    for t in &texts {
        q = q.bind(t.clone());
    }
    if let Some(ms) = filter.start_ms_min {
        q = q.bind(ms);
    }
    if let Some((ms, id)) = &after {
        q = q.bind(*ms).bind(id.clone());
    }
    let rows = q.fetch_all(pool).await?;
    let mut out = rows
        .iter()
        .map(execution_from_row)
        .collect::<Result<Vec<_>>>()?;
    let token = if out.len() > page_size as usize {
        out.truncate(page_size as usize);
        out.last()
            .map(|e| format!("{}.{}", e.start_ms, e.execution_id))
    } else {
        None
    };
    Ok((out, token))
}

/// Parses a history page token made by [`list_executions`].
pub fn parse_history_token(token: &str) -> Option<(i64, String)> {
    let (ms, id) = token.split_once('.')?;
    let ms = ms.parse().ok()?;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some((ms, id.to_owned()))
}

/// One line of a run's output on its way to the store.
#[derive(Debug, Clone)]
pub struct NewLogLine {
    pub ts_ms: i64,
    pub message: String,
}

/// Appends lines numbered from `first_line_no`, in one transaction.
pub async fn append_logs(
    pool: &AnyPool,
    execution_id: &str,
    first_line_no: i64,
    lines: &[NewLogLine],
    ingested_ms: i64,
) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for (i, line) in lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO execution_logs (execution_id, line_no, ts_ms, ingested_ms, message) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(execution_id)
        .bind(first_line_no + i as i64)
        .bind(line.ts_ms)
        .bind(ingested_ms)
        .bind(&line.message)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Appends one line after the last one (for lines written outside a run's log stream).
pub async fn append_system_line(
    pool: &AnyPool,
    execution_id: &str,
    now_ms: i64,
    message: &str,
) -> Result<()> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(line_no), 0) AS last FROM execution_logs WHERE execution_id = $1",
    )
    .bind(execution_id)
    .fetch_one(pool)
    .await?;
    let last: i64 = row.try_get("last")?;
    let line = NewLogLine {
        ts_ms: now_ms,
        message: message.to_owned(),
    };
    append_logs(pool, execution_id, last + 1, &[line], now_ms).await
}

/// Up to `limit` lines after line number `after`, with the number of the last one.
pub async fn read_logs(
    pool: &AnyPool,
    execution_id: &str,
    after: i64,
    limit: u32,
) -> Result<(Vec<LogLine>, i64)> {
    let rows = sqlx::query(&format!(
        "SELECT line_no, ts_ms, ingested_ms, message FROM execution_logs \
         WHERE execution_id = $1 AND line_no > $2 ORDER BY line_no LIMIT {limit}"
    ))
    .bind(execution_id)
    .bind(after)
    .fetch_all(pool)
    .await?;
    let mut last = after;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        last = row.try_get("line_no")?;
        lines.push(LogLine {
            timestamp: row.try_get("ts_ms")?,
            ingestion_time: row.try_get("ingested_ms")?,
            message: row.try_get("message")?,
        });
    }
    Ok((lines, last))
}

/// Claims one due occurrence of a schedule. True for exactly one caller per occurrence,
/// across every server replica sharing the database.
#[allow(clippy::too_many_arguments)]
pub async fn claim_fire(
    pool: &AnyPool,
    project_id: &str,
    deployment_name: &str,
    schedule_name: &str,
    fire_ms: i64,
    execution_id: &str,
    runner_id: &str,
    now_ms: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO schedule_fires (project_id, deployment_name, schedule_name, fire_ms, \
         execution_id, runner_id, claimed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(deployment_name)
    .bind(schedule_name)
    .bind(fire_ms)
    .bind(execution_id)
    .bind(runner_id)
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Where the scheduler's evaluation of a schedule resumes: when it was first seen enabled,
/// and the latest occurrence already fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub enabled_ms: i64,
    pub last_fire_ms: Option<i64>,
}

/// The latest fired occurrence of every schedule that ever fired.
pub async fn last_fires(
    pool: &AnyPool,
) -> Result<std::collections::HashMap<(String, String, String), i64>> {
    let rows = sqlx::query(
        "SELECT project_id, deployment_name, schedule_name, MAX(fire_ms) AS last_fire_ms \
         FROM schedule_fires GROUP BY project_id, deployment_name, schedule_name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                (
                    r.try_get("project_id")?,
                    r.try_get("deployment_name")?,
                    r.try_get("schedule_name")?,
                ),
                r.try_get("last_fire_ms")?,
            ))
        })
        .collect()
}

/// Every enabled schedule of every deployment, with what a run of it needs.
pub async fn enabled_schedules(pool: &AnyPool) -> Result<Vec<crate::runner::EnabledSchedule>> {
    let rows = sqlx::query(
        "SELECT p.org_key, p.project_id, p.root_path, d.deployment_name, d.environment_name, \
         d.git_rev_hash, s.schedule_name, s.cron_interval, s.job_name, s.enabled_at \
         FROM schedules s \
         JOIN deployments d ON d.project_id = s.project_id AND d.deployment_name = s.deployment_name \
         JOIN projects p ON p.project_id = s.project_id \
         WHERE s.enabled = 1 ORDER BY p.project_id, d.deployment_name, s.schedule_name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(crate::runner::EnabledSchedule {
                target: crate::runner::RunTarget {
                    org: r.try_get("org_key")?,
                    project_id: r.try_get("project_id")?,
                    deployment_name: r.try_get("deployment_name")?,
                    environment_name: r.try_get("environment_name")?,
                    git_rev_hash: r.try_get("git_rev_hash")?,
                    root_path: r.try_get("root_path")?,
                },
                schedule_name: r.try_get("schedule_name")?,
                interval: r.try_get("cron_interval")?,
                job_name: r.try_get("job_name")?,
                enabled_ms: r.try_get("enabled_at")?,
            })
        })
        .collect()
}

/// Records `now_ms` as the moment a schedule was seen enabled unless already recorded,
/// and returns its cursor.
pub async fn schedule_cursor(
    pool: &AnyPool,
    project_id: &str,
    deployment_name: &str,
    schedule_name: &str,
    now_ms: i64,
) -> Result<Cursor> {
    sqlx::query(
        "INSERT INTO schedule_cursors (project_id, deployment_name, schedule_name, enabled_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(deployment_name)
    .bind(schedule_name)
    .bind(now_ms)
    .execute(pool)
    .await?;
    let row = sqlx::query(
        "SELECT c.enabled_ms AS enabled_ms, \
         (SELECT MAX(f.fire_ms) FROM schedule_fires f WHERE f.project_id = c.project_id \
          AND f.deployment_name = c.deployment_name AND f.schedule_name = c.schedule_name \
          AND f.fire_ms >= c.enabled_ms) AS last_fire_ms \
         FROM schedule_cursors c WHERE c.project_id = $1 AND c.deployment_name = $2 \
         AND c.schedule_name = $3",
    )
    .bind(project_id)
    .bind(deployment_name)
    .bind(schedule_name)
    .fetch_one(pool)
    .await?;
    Ok(Cursor {
        enabled_ms: row.try_get("enabled_ms")?,
        last_fire_ms: row.try_get("last_fire_ms")?,
    })
}

/// Forgets the cursors of schedules no longer enabled, so that enabling one again starts
/// afresh (and an `@once` schedule runs once more).
pub async fn forget_cursors_except(
    pool: &AnyPool,
    enabled: &std::collections::HashSet<(String, String, String)>,
) -> Result<()> {
    let rows =
        sqlx::query("SELECT project_id, deployment_name, schedule_name FROM schedule_cursors")
            .fetch_all(pool)
            .await?;
    for row in rows {
        let key: (String, String, String) = (
            row.try_get("project_id")?,
            row.try_get("deployment_name")?,
            row.try_get("schedule_name")?,
        );
        if !enabled.contains(&key) {
            sqlx::query(
                "DELETE FROM schedule_cursors WHERE project_id = $1 AND deployment_name = $2 \
                 AND schedule_name = $3",
            )
            .bind(&key.0)
            .bind(&key.1)
            .bind(&key.2)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}
