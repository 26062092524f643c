//! `meltano-cloud logs print`: the log lines of an execution, optionally followed live.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use crate::api::{HistoryQuery, LogLine};
use crate::cli::GlobalArgs;
use crate::cli::target::{Target, connect};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the log lines of an execution.
    Print(PrintArgs),
}

#[derive(Debug, clap::Args)]
pub struct PrintArgs {
    /// Execution id, as shown by `run` and `history`.
    #[arg(long)]
    pub execution_id: String,
    /// Keep printing new lines until the execution ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Seconds between polls while following.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS", hide = true)]
    pub poll_interval: f64,
}

fn print_line(out: &mut impl Write, line: &LogLine) -> std::io::Result<()> {
    let at = Utc
        .timestamp_millis_opt(line.timestamp)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| line.timestamp.to_string());
    writeln!(
        out,
        "[{at}] {}",
        line.message.trim_end_matches(['\n', '\r'])
    )
}

/// Whether the execution is still running (one listing of running executions).
async fn still_running(target: &Target, execution_id: &str) -> miette::Result<bool> {
    let (org, pid) = target.ids()?;
    let query = HistoryQuery {
        result: Some("running".into()),
        ..HistoryQuery::default()
    };
    let running = target.client.all_history(org, pid, &query, None).await?;
    Ok(running.items.iter().any(|e| e.execution_id == execution_id))
}

pub async fn run(global: &GlobalArgs, cmd: Command) -> miette::Result<ExitCode> {
    let Command::Print(args) = cmd;
    let target = connect(global, None).await?;
    target.announce(global);
    let poll = Duration::from_secs_f64(args.poll_interval.clamp(0.05, 60.0));
    print_lines(&target, &args.execution_id, args.follow.then_some(poll)).await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the log lines of an execution on stdout; with `follow`, keeps polling at that
/// interval and printing new lines until the execution ends. Returns early, without an
/// error, when stdout is closed (e.g. piped into `head`).
pub async fn print_lines(
    target: &Target,
    execution_id: &str,
    follow: Option<Duration>,
) -> miette::Result<()> {
    let (org, pid) = target.ids()?;
    let id = execution_id;
    let stdout = std::io::stdout();
    // The token of the page being read and how many of its lines were printed, so that a
    // page re-read while following prints only what is new.
    let mut token: Option<String> = None;
    let mut printed_in_page = 0usize;
    loop {
        let page = target.client.logs(org, pid, id, token.as_deref()).await?;
        let new = page.results.len().saturating_sub(printed_in_page);
        {
            let mut out = stdout.lock();
            for line in page.results.iter().skip(printed_in_page) {
                if print_line(&mut out, line).is_err() {
                    return Ok(());
                }
            }
            let _ = out.flush();
        }
        printed_in_page += new;
        match page.pagination.and_then(|p| p.next_page_token) {
            Some(next) if !next.is_empty() && Some(&next) != token.as_ref() => {
                token = Some(next);
                printed_in_page = 0;
                continue;
            }
            _ => {}
        }
        let Some(poll) = follow else {
            break;
        };
        if new == 0 && !still_running(target, id).await? {
            // One last read: lines written between the read above and the end of the run.
            let page = target.client.logs(org, pid, id, token.as_deref()).await?;
            let mut out = stdout.lock();
            for line in page.results.iter().skip(printed_in_page) {
                let _ = print_line(&mut out, line);
            }
            let _ = out.flush();
            break;
        }
        tokio::time::sleep(poll).await;
    }
    Ok(())
}
