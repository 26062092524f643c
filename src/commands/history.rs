//! `meltano-cloud history`: past and running executions, newest first.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::{Execution, HistoryQuery};
use crate::cli::GlobalArgs;
use crate::cli::target::connect;
use crate::render::table::{Format, Table, print_list};

/// Show the executions of the project's jobs and schedules, newest first.
// A fixed usage line: clap's generated one lists the arguments given, including global ones
// taken from the environment (`--config-path`), as if they were required.
#[derive(Debug, clap::Args)]
#[command(override_usage = "meltano-cloud history [OPTIONS]")]
pub struct Args {
    /// Only executions of the schedule with exactly this name.
    #[arg(long, group = "schedule_filter")]
    pub schedule: Option<String>,
    /// Only executions of schedules whose name starts with this.
    #[arg(long, group = "schedule_filter")]
    pub schedule_prefix: Option<String>,
    /// Only executions of schedules whose name contains this.
    #[arg(long, group = "schedule_filter")]
    pub schedule_contains: Option<String>,
    /// Only executions on the deployment with exactly this name.
    #[arg(long, group = "deployment_filter")]
    pub deployment: Option<String>,
    /// Only executions on deployments whose name starts with this.
    #[arg(long, group = "deployment_filter")]
    pub deployment_prefix: Option<String>,
    /// Only executions on deployments whose name contains this.
    #[arg(long, group = "deployment_filter")]
    pub deployment_contains: Option<String>,
    /// Only executions with this result (any case, e.g. `failed` or `FAILED`).
    #[arg(long, value_enum, ignore_case = true)]
    pub result: Option<ResultFilter>,
    /// Show at most this many executions.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Only executions started within this time, e.g. `1w2d3h4m` (weeks, days, hours, minutes).
    #[arg(long, value_name = "DURATION", value_parser = parse_lookback)]
    pub lookback: Option<chrono::Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Terminal)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResultFilter {
    Success,
    Failed,
    Running,
    Stopped,
}

impl ResultFilter {
    fn as_str(self) -> &'static str {
        match self {
            ResultFilter::Success => "success",
            ResultFilter::Failed => "failed",
            ResultFilter::Running => "running",
            ResultFilter::Stopped => "stopped",
        }
    }
}

/// Parses `1w2d3h4m` (any subset, in any order; `s` for seconds is accepted too).
pub fn parse_lookback(text: &str) -> Result<chrono::Duration, String> {
    let err = || {
        format!(
            "`{text}` is not a duration: use a number followed by w, d, h or m, e.g. `1w2d3h4m` or `90m`"
        )
    };
    let mut total = chrono::Duration::zero();
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| err())?;
        digits.clear();
        let part = match c.to_ascii_lowercase() {
            'w' => chrono::Duration::try_weeks(n),
            'd' => chrono::Duration::try_days(n),
            'h' => chrono::Duration::try_hours(n),
            'm' => chrono::Duration::try_minutes(n),
            's' => chrono::Duration::try_seconds(n),
            _ => None,
        }
        .ok_or_else(err)?;
        total = total.checked_add(&part).ok_or_else(err)?;
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(err());
    }
    Ok(total)
}

/// The control plane matches `*` and `?` as wildcards and every other character literally;
/// names are slugs, which never contain either.
fn glob_literal(text: &str) -> String {
    text.to_string()
}

fn pattern(
    exact: Option<String>,
    prefix: Option<String>,
    contains: Option<String>,
) -> Option<String> {
    if let Some(e) = exact {
        return Some(glob_literal(&e));
    }
    if let Some(p) = prefix {
        return Some(format!("{}*", glob_literal(&p)));
    }
    contains.map(|c| format!("*{}*", glob_literal(&c)))
}

/// How a status is shown to people: a stopped run is Stopped, never Failed.
pub fn status_label(status: &str) -> &'static str {
    match status.to_ascii_uppercase().as_str() {
        "RUNNING" => "Running",
        "SUCCEEDED" | "SUCCESS" | "SUCCEEDED_WITH_WARNINGS" => "Success",
        "FAILED" | "ERROR" => "Failed",
        "STOPPED" | "STOPPING" => "Stopped",
        "SKIPPED" => "Skipped",
        "DELETED" => "Deleted",
        "PENDING" | "QUEUED" => "Pending",
        _ => "Unknown",
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn duration_label(e: &Execution, now: DateTime<Utc>) -> String {
    let Some(start) = parse_time(&e.start_time) else {
        return "-".into();
    };
    let end = e.end_time.as_deref().and_then(parse_time).unwrap_or(now);
    let secs = (end - start).num_seconds().max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    execution: &'a Execution,
    /// Running, Success, Failed, Stopped, Skipped.
    result: &'static str,
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let target = connect(global, None).await?;
    target.announce(global);
    let (org, pid) = target.ids()?;
    let query = HistoryQuery {
        schedule: pattern(args.schedule, args.schedule_prefix, args.schedule_contains),
        deployment: pattern(
            args.deployment,
            args.deployment_prefix,
            args.deployment_contains,
        ),
        result: args.result.map(|r| r.as_str().to_string()),
        start_time: args
            .lookback
            .map(|d| (Utc::now() - d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        page_size: None,
        page_token: None,
    };
    let paged = target
        .client
        .all_history(org, pid, &query, Some(args.limit))
        .await?;
    let now = Utc::now();
    let rows: Vec<Row> = paged
        .items
        .iter()
        .map(|e| Row {
            execution: e,
            result: status_label(&e.status),
        })
        .collect();
    let mut table = Table::new(&[
        "EXECUTION ID",
        "DEPLOYMENT",
        "SCHEDULE",
        "JOB",
        "STARTED (UTC)",
        "DURATION",
        "RESULT",
    ])
    .keys(&[0])
    .optional(&[5, 3, 4, 2, 1]);
    for r in &rows {
        let e = r.execution;
        let started = parse_time(&e.start_time)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| e.start_time.clone());
        let result = match (r.result, e.exit_code) {
            ("Failed", Some(code)) => format!("Failed (exit {code})"),
            (label, _) => label.to_string(),
        };
        table.push(vec![
            e.execution_id.clone(),
            e.deployment_name.clone(),
            e.schedule_name.clone().unwrap_or_else(|| "-".into()),
            e.job_name.clone().unwrap_or_else(|| "-".into()),
            started,
            duration_label(e, now),
            result,
        ]);
    }
    print_list(
        args.format,
        &table,
        &rows,
        paged.more,
        "executions",
        "Raise --limit or narrow the filters to see others.",
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookbacks() {
        let d = parse_lookback("1w2d3h4m").unwrap();
        assert_eq!(d.num_minutes(), 7 * 1440 + 2 * 1440 + 3 * 60 + 4);
        assert_eq!(parse_lookback("90m").unwrap().num_minutes(), 90);
        assert!(parse_lookback("").is_err());
        assert!(parse_lookback("3").is_err());
        assert!(parse_lookback("1x").is_err());
        assert!(parse_lookback("h").is_err());
    }

    #[test]
    fn patterns_match_literally() {
        assert_eq!(pattern(Some("daily".into()), None, None).unwrap(), "daily");
        assert_eq!(pattern(None, Some("daily".into()), None).unwrap(), "daily*");
        assert_eq!(pattern(None, None, Some("sync".into())).unwrap(), "*sync*");
        assert_eq!(pattern(None, None, None), None);
    }

    #[test]
    fn stopped_is_not_failed() {
        assert_eq!(status_label("STOPPED"), "Stopped");
        assert_eq!(status_label("FAILED"), "Failed");
        assert_eq!(status_label("SUCCEEDED"), "Success");
    }
}
