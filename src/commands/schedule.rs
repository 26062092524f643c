//! `meltano-cloud schedule list|describe|enable|disable`.

use std::process::ExitCode;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::api::Schedule;
use crate::cli::GlobalArgs;
use crate::cli::target::{Target, connect};
use crate::render::table::{Format, Table, print_list};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List schedules with their interval, runs per day and whether they are enabled.
    List(ListArgs),
    /// Show one schedule and its next run times (UTC).
    Describe(DescribeArgs),
    /// Enable a schedule on a deployment.
    Enable(TargetArgs),
    /// Disable a schedule on a deployment.
    Disable(TargetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only the schedules of this deployment (default: every deployment).
    #[arg(long)]
    pub deployment: Option<String>,
    /// Show at most this many schedules.
    #[arg(long, default_value_t = 125)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Terminal)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Deployment of the schedule (default: the remembered deployment).
    #[arg(long)]
    pub deployment: Option<String>,
    /// Name of the schedule in meltano.yml.
    #[arg(long)]
    pub schedule: String,
}

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print only the upcoming run times, one per line.
    #[arg(long)]
    pub only_upcoming: bool,
    /// How many upcoming run times to show.
    #[arg(long, default_value_t = 10)]
    pub num_upcoming: usize,
}

/// A parsed interval: a cron expression (or its `@daily`-style nickname), or `@once`.
fn parse_interval(interval: &str) -> Option<croner::Cron> {
    let trimmed = interval.trim();
    if trimmed.eq_ignore_ascii_case("@once") || trimmed.eq_ignore_ascii_case("@manual") {
        return None;
    }
    let pattern = match trimmed.to_ascii_lowercase().as_str() {
        // croner has no @yearly/@monthly on every version: spell them out.
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        _ => trimmed.to_string(),
    };
    croner::Cron::new(&pattern).parse().ok()
}

/// The next `n` run times after `from`.
pub fn next_runs(interval: &str, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    match parse_interval(interval) {
        Some(cron) => cron.iter_after(from).take(n).collect(),
        None => Vec::new(),
    }
}

/// Average runs per day over the four weeks after `from` (`None` for `@once` or an
/// interval that cannot be parsed).
pub fn runs_per_day(interval: &str, from: DateTime<Utc>) -> Option<f64> {
    let cron = parse_interval(interval)?;
    let days = 28;
    let end = from + Duration::days(days);
    // At most one run a minute: bounded work even for `* * * * *`.
    let count = cron
        .iter_after(from)
        .take_while(|t| *t <= end)
        .take(60 * 24 * days as usize)
        .count();
    Some(count as f64 / days as f64)
}

fn format_runs_per_day(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v <= 0.0 => "0".into(),
        Some(v) if v >= 1.0 && (v - v.round()).abs() < 0.005 => format!("{}", v.round() as u64),
        Some(v) if v >= 1.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[derive(Serialize)]
struct ScheduleRow<'a> {
    #[serde(flatten)]
    schedule: &'a Schedule,
    runs_per_day: Option<f64>,
}

pub async fn run(global: &GlobalArgs, cmd: Command) -> miette::Result<ExitCode> {
    let target = connect(global, None).await?;
    target.announce(global);
    match cmd {
        Command::List(args) => list(&target, args).await,
        Command::Describe(args) => describe(&target, args).await,
        Command::Enable(args) => set_enabled(&target, args, true).await,
        Command::Disable(args) => set_enabled(&target, args, false).await,
    }
}

async fn list(target: &Target, args: ListArgs) -> miette::Result<ExitCode> {
    let (org, pid) = target.ids()?;
    let deployment = args.deployment.as_deref();
    let paged = match target
        .client
        .all_schedules(org, pid, deployment, Some(args.limit))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            return Err(match deployment {
                Some(d) => target.explain_missing_deployment(e, d).await,
                None => e.into(),
            });
        }
    };
    let now = Utc::now();
    let rows: Vec<ScheduleRow> = paged
        .items
        .iter()
        .map(|s| ScheduleRow {
            schedule: s,
            runs_per_day: runs_per_day(&s.interval, now).map(|v| (v * 100.0).round() / 100.0),
        })
        .collect();
    let mut table = Table::new(&["DEPLOYMENT", "SCHEDULE", "INTERVAL", "RUNS/DAY", "ENABLED"])
        .keys(&[0, 1])
        .optional(&[3, 2]);
    for r in &rows {
        table.push(vec![
            r.schedule.deployment_name.clone(),
            r.schedule.schedule_name.clone(),
            r.schedule.interval.clone(),
            format_runs_per_day(r.runs_per_day),
            yes_no(r.schedule.enabled).into(),
        ]);
    }
    print_list(
        args.format,
        &table,
        &rows,
        paged.more,
        "schedules",
        "Raise --limit to see more.",
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn get_schedule(target: &Target, args: &TargetArgs) -> miette::Result<(String, Schedule)> {
    let (org, pid) = target.ids()?;
    let deployment = target.deployment_or_default(args.deployment.clone())?;
    match target
        .client
        .get_schedule(org, pid, &deployment, &args.schedule)
        .await
    {
        Ok(s) => Ok((deployment, s)),
        Err(e) => Err(target
            .explain_missing_schedule(e, &deployment, &args.schedule)
            .await),
    }
}

async fn describe(target: &Target, args: DescribeArgs) -> miette::Result<ExitCode> {
    let (deployment, s) = get_schedule(target, &args.target).await?;
    let now = Utc::now();
    let upcoming = next_runs(&s.interval, now, args.num_upcoming);
    if args.only_upcoming {
        for t in &upcoming {
            println!("{}", t.format("%Y-%m-%d %H:%M UTC"));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("Deployment: {deployment}");
    println!("Schedule:   {}", s.schedule_name);
    if let Some(job) = &s.job_name {
        println!("Job:        {job}");
    }
    println!("Interval:   {} (UTC)", s.interval);
    println!(
        "Runs/day:   {}",
        format_runs_per_day(runs_per_day(&s.interval, now))
    );
    println!("Enabled:    {}", yes_no(s.enabled));
    if parse_interval(&s.interval).is_none() {
        println!();
        println!(
            "`{}` is not a recurring interval: the schedule runs only when started with \
             `meltano-cloud run {} --deployment {deployment}`.",
            s.interval, s.schedule_name
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    if s.enabled {
        println!("Next {} runs (UTC):", upcoming.len());
    } else {
        println!(
            "Next {} run times (UTC), if enabled (it is disabled: enable it with `meltano-cloud \
             schedule enable --deployment {deployment} --schedule {}`):",
            upcoming.len(),
            s.schedule_name
        );
    }
    for t in &upcoming {
        println!("  {}", t.format("%Y-%m-%d %H:%M (%a)"));
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(target: &Target, args: TargetArgs, enabled: bool) -> miette::Result<ExitCode> {
    let (org, pid) = target.ids()?;
    let deployment = target.deployment_or_default(args.deployment.clone())?;
    if let Err(e) = target
        .client
        .set_schedule_enabled(org, pid, &deployment, &args.schedule, enabled)
        .await
    {
        return Err(target
            .explain_missing_schedule(e, &deployment, &args.schedule)
            .await);
    }
    println!(
        "{} schedule `{}` on deployment `{deployment}`.",
        if enabled { "Enabled" } else { "Disabled" },
        args.schedule
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn runs_per_day_of_common_intervals() {
        let from = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(runs_per_day("@hourly", from), Some(24.0));
        assert_eq!(runs_per_day("@daily", from), Some(1.0));
        assert_eq!(runs_per_day("*/15 * * * *", from), Some(96.0));
        assert_eq!(runs_per_day("@weekly", from), Some(4.0 / 28.0));
        assert_eq!(runs_per_day("@once", from), None);
        assert_eq!(runs_per_day("not a cron", from), None);
        assert_eq!(format_runs_per_day(runs_per_day("@weekly", from)), "0.14");
        assert_eq!(format_runs_per_day(runs_per_day("@hourly", from)), "24");
        assert_eq!(format_runs_per_day(None), "-");
    }

    #[test]
    fn next_runs_are_utc_cron_times() {
        let from = Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap();
        let runs = next_runs("0 */6 * * *", from, 3);
        let shown: Vec<String> = runs.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            shown,
            [
                "2026-03-01T18:00:00+00:00",
                "2026-03-02T00:00:00+00:00",
                "2026-03-02T06:00:00+00:00"
            ]
        );
        assert_eq!(
            next_runs("@monthly", from, 1)[0].to_rfc3339(),
            "2026-04-01T00:00:00+00:00"
        );
    }
}
