use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::api::{AuditChange, NewAuditRecord};
use crate::apply::client_effects::ClientEffects;
use crate::apply::lock::{HeldLock, holder};
use crate::apply::{self, ChangeResult, Outcome, Report, SecretValues};
use crate::cli::GlobalArgs;
use crate::cli::target::{self, Target};
use crate::commands::plan::{self as plan_cmd, PlanningArgs, print};
use crate::plan::saved::{SavedPlan, digest};
use crate::plan::{Action, Operation, Plan};
use crate::render::plan::text;
use crate::secrets::decrypt::{SecretRequest, SopsArgs, decrypt_requests};

/// Make the changes: plan, show the plan, ask, then apply it under the project lock.
///
/// With PLANFILE (from `plan -o FILE`), applies exactly that plan without asking, after
/// checking the project did not change since it was made. Secret values are decrypted
/// with sops only for the secrets the plan sets.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan saved with `meltano-cloud plan -o FILE`.
    #[arg(value_name = "PLANFILE")]
    pub planfile: Option<PathBuf>,

    /// Apply without asking for confirmation (for CI).
    #[arg(long)]
    pub auto_approve: bool,

    /// How long to wait for the project lock when someone else holds it (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// How many changes run at once.
    #[arg(long, value_name = "N", default_value_t = apply::DEFAULT_CONCURRENCY)]
    pub parallelism: usize,

    #[command(flatten)]
    pub planning: PlanningArgs,

    #[command(flatten)]
    pub sops: SopsArgs,
}

/// Parses `90s`, `5m`, `1h`, `1m30s` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{s}` is not a duration like 30s, 5m or 1h"))?;
        number.clear();
        total += match c {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            _ => return Err(format!("`{s}` is not a duration like 30s, 5m or 1h")),
        };
    }
    if !number.is_empty() {
        return Err(format!("`{s}` is not a duration like 30s, 5m or 1h"));
    }
    Ok(Duration::from_secs(total))
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    #[error(
        "Saved plan is stale: the project changed since the plan was made (revision {planned} when planned, {current} now)"
    )]
    #[diagnostic(
        code(apply::stale_plan),
        help("make a new plan with `meltano-cloud plan -o FILE`, review it, and apply that")
    )]
    Stale { planned: i64, current: i64 },

    #[error(
        "the saved plan was made for project {planned} ({planned_id}) but the control plane's project is {current} ({current_id})"
    )]
    #[diagnostic(
        code(apply::wrong_project),
        help("select the project the plan was made for with --project, or plan again")
    )]
    WrongProject {
        planned: String,
        planned_id: String,
        current: String,
        current_id: String,
    },

    #[error("--target, --destroy and --allow-destroy-all cannot be combined with a saved plan")]
    #[diagnostic(
        code(apply::planning_flags),
        help(
            "pass them to `meltano-cloud plan -o FILE` instead; a saved plan is applied as it is"
        )
    )]
    PlanningFlags,

    #[error("refusing to ask for confirmation: stdin is not a terminal")]
    #[diagnostic(
        code(apply::no_terminal),
        help("pass --auto-approve, or apply a reviewed plan with `meltano-cloud apply PLANFILE`")
    )]
    NotATerminal,

    #[error("Apply cancelled.")]
    #[diagnostic(code(apply::cancelled), help("only `yes` approves the plan"))]
    Cancelled,

    #[error("refusing to apply to the local control plane in CI")]
    #[diagnostic(
        code(apply::local_in_ci),
        help(
            "CI=true and no control plane was named, so this would apply to a throwaway local one; set MELTANO_CLOUD_API_URL (and MELTANO_CLOUD_TOKEN) to your control plane, or MELTANO_CLOUD_API_URL=local if the local one is really meant"
        )
    )]
    LocalInCi,

    #[error("the value of {name} changed in {file} since the plan was made")]
    #[diagnostic(
        code(apply::secret_changed),
        help("the plan was reviewed with another value; make and review a new plan")
    )]
    SecretChanged { name: String, file: String },

    #[error("cannot read {file} to check the value of {name}: {detail}")]
    #[diagnostic(
        code(apply::secret_unreadable),
        help(
            "run apply from the folder of cloud.yml (or pass --file) so the sops files are found"
        )
    )]
    SecretUnreadable {
        name: String,
        file: String,
        detail: String,
    },

    #[error("Apply failed: {failed} change(s) failed, {skipped} not applied, {applied} applied")]
    #[diagnostic(
        code(apply::failed),
        help(
            "nothing was rolled back; fix the cause and run `meltano-cloud apply` again: it plans from the current state and converges"
        )
    )]
    Failed {
        applied: usize,
        failed: usize,
        skipped: usize,
    },

    #[error("Apply interrupted before any change was made")]
    #[diagnostic(
        code(apply::interrupted),
        help("nothing was changed; the project lock was released")
    )]
    InterruptedBefore,

    #[error("Apply interrupted: {applied} change(s) applied, {skipped} not applied")]
    #[diagnostic(
        code(apply::interrupted),
        help("run `meltano-cloud apply` again to finish: it plans from the current state")
    )]
    Interrupted { applied: usize, skipped: usize },
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    match &args.planfile {
        Some(file) => apply_saved(global, &args, file).await,
        None => apply_fresh(global, &args).await,
    }
}

/// In CI, an apply must name its control plane: falling back to the local one would apply
/// to a throwaway database and report success.
fn refuse_local_in_ci(global: &GlobalArgs) -> miette::Result<()> {
    if !in_ci() {
        return Ok(());
    }
    let named = |v: Option<&str>| v.is_some_and(|v| !v.trim().is_empty());
    if named(global.api_url.as_deref()) {
        return Ok(());
    }
    let configured = crate::settings::settings_path(global.config_path.as_deref())
        .ok()
        .and_then(|p| crate::settings::Settings::load(&p).ok())
        .map(|s| s.with_env_overrides())
        .is_some_and(|s| named(s.base_url.as_deref()));
    if configured {
        return Ok(());
    }
    Err(ApplyError::LocalInCi.into())
}

async fn apply_fresh(global: &GlobalArgs, args: &Args) -> miette::Result<ExitCode> {
    refuse_local_in_ci(global)?;
    let desired = plan_cmd::load_desired(global).await?;
    let target = plan_cmd::connect(global, &desired).await?;
    let pid = target.project()?.project_id.clone();
    if !args.auto_approve && !std::io::stdin().is_terminal() {
        return Err(ApplyError::NotATerminal.into());
    }
    plan_cmd::warn_targets(&args.planning.targets);

    let lock = HeldLock::acquire(
        &target.client,
        &target.org,
        &pid,
        "apply",
        args.lock_timeout,
    )
    .await?;
    let result = async {
        let prepared = until_interrupted(async {
            let snapshot = target.client.snapshot(&target.org, &pid).await?;
            let plan = crate::plan::plan(&desired.state, &snapshot, &args.planning.options())?;
            let ctx = plan_cmd::context(&target, &snapshot, &args.planning.targets);
            print(&text::render(&ctx, &plan))?;
            if !plan.has_changes() {
                return Ok(None);
            }
            if !args.auto_approve {
                confirm().await?;
            }
            let values = decrypt(&desired.spec.dir, &plan, &args.sops, None).await?;
            Ok(Some((plan, values)))
        })
        .await?;
        let Some((plan, values)) = prepared else {
            return Ok(ExitCode::SUCCESS);
        };
        execute(
            &target,
            &pid,
            &plan,
            &values,
            args.parallelism,
            desired.git_commit.clone(),
        )
        .await
    }
    .await;
    lock.release().await;
    result
}

/// Runs `work` unless ctrl-c comes first (before any change is made).
async fn until_interrupted<T>(
    work: impl std::future::Future<Output = miette::Result<T>>,
) -> miette::Result<T> {
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Err(ApplyError::InterruptedBefore.into()),
    }
}

async fn apply_saved(global: &GlobalArgs, args: &Args, file: &Path) -> miette::Result<ExitCode> {
    if !args.planning.targets.is_empty() || args.planning.destroy || args.planning.allow_destroy_all
    {
        return Err(ApplyError::PlanningFlags.into());
    }
    let saved = SavedPlan::read(file)?;
    refuse_local_in_ci(global)?;
    let target = target::connect(global, Some(&saved.project_name)).await?;
    let project = target.project()?.clone();
    if project.project_id != saved.project_id {
        return Err(ApplyError::WrongProject {
            planned: saved.project_name.clone(),
            planned_id: saved.project_id.clone(),
            current: project.project_name.clone(),
            current_id: project.project_id.clone(),
        }
        .into());
    }
    let pid = project.project_id.clone();
    let lock = HeldLock::acquire(
        &target.client,
        &target.org,
        &pid,
        "apply",
        args.lock_timeout,
    )
    .await?;
    let result = async {
        let ctx = crate::commands::show::context(&saved);
        let plan = &saved.plan;
        let values = until_interrupted(async {
            let snapshot = target.client.snapshot(&target.org, &pid).await?;
            if snapshot.revision != saved.revision {
                // Once, and naming the project: where the refused plan was headed.
                print(&format!("{}\n", target.description))?;
                return Err(ApplyError::Stale {
                    planned: saved.revision,
                    current: snapshot.revision,
                }
                .into());
            }
            if !plan.has_changes() {
                print(&text::render(&ctx, plan))?;
                return Ok(None);
            }
            print(&format!("{}\n", target.description))?;
            let base = crate::spec::parent_dir(&global.file);
            decrypt(&base, plan, &args.sops, Some(&base))
                .await
                .map(Some)
        })
        .await?;
        let Some(values) = values else {
            return Ok(ExitCode::SUCCESS);
        };
        execute(
            &target,
            &pid,
            plan,
            &values,
            args.parallelism,
            saved.git_commit.clone(),
        )
        .await
    }
    .await;
    lock.release().await;
    result
}

/// Asks on the terminal; only `yes` proceeds.
async fn confirm() -> miette::Result<()> {
    print(
        "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ",
    )?;
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    print("\n")?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(ApplyError::Cancelled.into())
    }
}

/// Decrypts the values of the secrets the plan sets (once per sops file). With
/// `verify_in`, first checks each file still holds the ciphertext the plan was made from.
async fn decrypt(
    base: &Path,
    plan: &Plan,
    sops: &SopsArgs,
    verify_in: Option<&Path>,
) -> miette::Result<SecretValues> {
    let sets: Vec<(&String, &String, &String, &String)> = plan
        .effective()
        .filter_map(|c| match &c.operation {
            Operation::SetSecret {
                name,
                file,
                key_path,
                fingerprint,
            } => Some((name, file, key_path, fingerprint)),
            _ => None,
        })
        .collect();
    if sets.is_empty() {
        return Ok(SecretValues::new());
    }
    if let Some(dir) = verify_in {
        for (name, file, key_path, fingerprint) in &sets {
            let path = dir.join(file);
            let current = crate::secrets::metadata::read_sops_file(&path)
                .map_err(|e| format!("{e:?}"))
                .and_then(|f| f.fingerprint_of(key_path).map_err(|e| format!("{e:?}")));
            match current {
                Ok(fp) if fp == **fingerprint => {}
                Ok(_) => {
                    return Err(ApplyError::SecretChanged {
                        name: (*name).clone(),
                        file: (*file).clone(),
                    }
                    .into());
                }
                Err(detail) => {
                    return Err(ApplyError::SecretUnreadable {
                        name: (*name).clone(),
                        file: (*file).clone(),
                        detail,
                    }
                    .into());
                }
            }
        }
    }
    let paths: Vec<PathBuf> = sets.iter().map(|(_, f, _, _)| PathBuf::from(f)).collect();
    let requests: Vec<SecretRequest> = sets
        .iter()
        .zip(&paths)
        .map(|((name, _, key_path, _), path)| SecretRequest {
            name,
            file: path,
            key_path,
            recipients: &[],
        })
        .collect();
    let decrypted = decrypt_requests(base, &requests, &sops.resolve()).await?;
    let mut values = SecretValues::new();
    // decrypt_requests has already masked every value in GitHub Actions.
    for (name, value) in decrypted.iter() {
        values.insert(name.to_string(), Zeroizing::new(value.expose().to_string()));
    }
    Ok(values)
}

async fn execute(
    target: &Target,
    pid: &str,
    plan: &Plan,
    values: &SecretValues,
    parallelism: usize,
    git_commit: Option<String>,
) -> miette::Result<ExitCode> {
    let effects = ClientEffects {
        client: &target.client,
        org: &target.org,
        pid,
    };
    print("\n")?;
    let finished: Mutex<Vec<ChangeResult>> = Mutex::new(Vec::new());
    let progress = |c: &crate::plan::Change, o: &Outcome| {
        let line = apply::progress_line(c, o);
        let _ = print(&format!("{line}\n"));
        if let Ok(mut f) = finished.lock() {
            f.push(ChangeResult {
                address: c.address.clone(),
                action: c.action,
                outcome: o.clone(),
            });
        }
    };
    let report = tokio::select! {
        report = apply::apply(plan, &effects, values, parallelism, &progress) => report,
        _ = tokio::signal::ctrl_c() => {
            let done = finished.lock().map(|f| f.clone()).unwrap_or_default();
            let results = plan
                .effective()
                .map(|c| {
                    done.iter().find(|r| r.address == c.address).cloned().unwrap_or(ChangeResult {
                        address: c.address.clone(),
                        action: c.action,
                        outcome: Outcome::Skipped { reason: "interrupted".into() },
                    })
                })
                .collect();
            Report { results, interrupted: true }
        }
    };

    let record = NewAuditRecord {
        actor: holder(),
        git_commit,
        plan_digest: digest(plan),
        changes: report
            .results
            .iter()
            .map(|r| AuditChange {
                address: r.address.clone(),
                action: r.action.as_str().into(),
                outcome: r.outcome.as_str().into(),
                error: match &r.outcome {
                    Outcome::Failed { error, .. } => Some(error.clone()),
                    _ => None,
                },
            })
            .collect(),
        outcome: report.outcome().into(),
    };
    if let Err(err) = target.client.add_audit(&target.org, pid, &record).await {
        eprintln!("Warning: the apply was not recorded in the audit log: {err}");
    }

    print(&summary(&report))?;
    let count = |f: fn(&Outcome) -> bool| report.results.iter().filter(|r| f(&r.outcome)).count();
    let applied = count(|o| matches!(o, Outcome::Applied { .. }));
    let failed = count(|o| matches!(o, Outcome::Failed { .. }));
    let skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
    if report.interrupted {
        return Err(ApplyError::Interrupted { applied, skipped }.into());
    }
    if !report.succeeded() {
        return Err(ApplyError::Failed {
            applied,
            failed,
            skipped,
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

/// `Apply complete! ...`, or the list of what was and was not applied.
pub fn summary(report: &Report) -> String {
    let of = |a: Action| report.applied().filter(|r| r.action == a).count();
    if report.succeeded() {
        return format!(
            "\nApply complete! Changes: {} added, {} changed, {} destroyed.\n",
            of(Action::Create),
            of(Action::Update),
            of(Action::Delete)
        );
    }
    let mut out = String::from("\n");
    let mut section = |title: &str, items: Vec<String>| {
        if !items.is_empty() {
            out.push_str(&format!("{title}:\n"));
            for i in items {
                out.push_str(&format!("  {i}\n"));
            }
        }
    };
    section(
        "Applied",
        report
            .applied()
            .map(|r| format!("{} {}", r.action.symbol(), r.address))
            .collect(),
    );
    section(
        "Failed",
        report
            .failed()
            .map(|r| match &r.outcome {
                Outcome::Failed { error, .. } => {
                    format!("{} {}: {error}", r.action.symbol(), r.address)
                }
                _ => r.address.clone(),
            })
            .collect(),
    );
    section(
        "Not applied",
        report
            .skipped()
            .map(|r| match &r.outcome {
                Outcome::Skipped { reason } => {
                    format!("{} {}: {reason}", r.action.symbol(), r.address)
                }
                _ => r.address.clone(),
            })
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5m3").is_err());
    }
}
