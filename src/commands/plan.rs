use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::api::Snapshot;
use crate::cli::GlobalArgs;
use crate::cli::target::{self, Target};
use crate::plan::saved::{FORMAT, FORMAT_VERSION, SavedPlan, digest};
use crate::plan::{DesiredState, Plan, PlanOptions, git};
use crate::render::plan::{Format, PlanContext, json, markdown, text};
use crate::spec::LoadedSpec;

/// Show what `apply` would change: diff cloud.yml against the control plane's live state.
///
/// Reads no secret value: changed secrets are found from their sops ciphertext, so no
/// decryption key is needed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exit with 0 when there are no changes, 2 when there are, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Save the plan to FILE; `meltano-cloud apply FILE` then performs exactly it.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    #[command(flatten)]
    pub planning: PlanningArgs,
}

/// Options shared by `plan` and `apply`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlanningArgs {
    /// Limit the plan to ADDR (e.g. `deployment.production`) and what it depends on.
    /// Repeatable. For exceptional cases only: the rest of cloud.yml is not applied.
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,

    /// Allow a plan that deletes every deployment of the project.
    #[arg(long)]
    pub allow_destroy_all: bool,

    /// Plan the deletion of every deployment and secret cloud.yml declares.
    #[arg(long)]
    pub destroy: bool,
}

impl PlanningArgs {
    pub fn options(&self) -> PlanOptions {
        PlanOptions {
            allow_destroy_all: self.allow_destroy_all,
            destroy: self.destroy,
            targets: self.targets.clone(),
        }
    }
}

/// cloud.yml loaded and its revs resolved.
pub struct Desired {
    pub spec: LoadedSpec,
    pub state: DesiredState,
    /// The local commit (HEAD), recorded in saved plans and the audit log.
    pub git_commit: Option<String>,
}

/// Loads cloud.yml (all diagnostics at once) and resolves tracked revs locally.
pub async fn load_desired(global: &GlobalArgs) -> miette::Result<Desired> {
    let spec = match crate::spec::load(&global.file) {
        Ok(spec) => spec,
        // Annotated in GitHub Actions by cli::main, like every failure.
        Err(err) => return Err(miette::Report::new(err)),
    };
    for w in &spec.warnings {
        if crate::render::github::is_github_actions() {
            crate::render::github::print_annotations(&crate::render::github::annotations_for(w));
        }
        eprintln!("{:?}", miette::Report::new(w.clone()));
    }
    let repo_dir = if spec.meltano.dir.as_os_str().is_empty() {
        Path::new(".").to_path_buf()
    } else {
        spec.meltano.dir.clone()
    };
    let commits = git::resolve_revs(
        &repo_dir,
        spec.cloud.deployments.values().map(|d| d.git_rev.as_str()),
    )
    .await;
    let git_commit = git::head(&repo_dir).await;
    let state = DesiredState::from_spec(&spec, &commits);
    Ok(Desired {
        spec,
        state,
        git_commit,
    })
}

/// The context line shown above a plan.
pub fn context(target: &Target, snapshot: &Snapshot, targets: &[String]) -> PlanContext {
    PlanContext {
        control_plane: target.description.clone(),
        api_url: target.client.base_url().to_string(),
        org: target.org.clone(),
        project_name: snapshot.project.project_name.clone(),
        project_id: snapshot.project.project_id.clone(),
        revision: snapshot.revision,
        targets: targets.to_vec(),
    }
}

/// Connects to the control plane of cloud.yml's project.
pub async fn connect(global: &GlobalArgs, desired: &Desired) -> miette::Result<Target> {
    let target = target::connect(global, Some(&desired.spec.cloud.project)).await?;
    target.project()?;
    Ok(target)
}

/// Warns that `--target` makes the plan partial.
pub fn warn_targets(targets: &[String]) {
    if targets.is_empty() {
        return;
    }
    eprintln!(
        "Warning: resource targeting is in effect ({}).\n  The plan may be incomplete: only the targeted objects and what they depend on are\n  considered. Use --target for exceptional cases, not routine work.\n",
        targets.join(", ")
    );
}

/// Writes `text` to stdout (styles stripped where they do not belong).
pub fn print(text: &str) -> miette::Result<()> {
    let mut out = anstream::stdout();
    out.write_all(text.as_bytes()).into_diagnostic()?;
    out.flush().into_diagnostic()
}

pub fn saved_plan(
    ctx: &PlanContext,
    desired: &Desired,
    snapshot: &Snapshot,
    plan: &Plan,
) -> SavedPlan {
    SavedPlan {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        meltano_cloud_version: env!("CARGO_PKG_VERSION").into(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        control_plane: ctx.control_plane.clone(),
        api_url: ctx.api_url.clone(),
        org: ctx.org.clone(),
        project_id: ctx.project_id.clone(),
        project_name: ctx.project_name.clone(),
        revision: snapshot.revision,
        inputs_digest: digest(&(&desired.state, snapshot)),
        git_commit: desired.git_commit.clone(),
        targets: ctx.targets.clone(),
        plan: plan.clone(),
    }
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let desired = load_desired(global).await?;
    let target = connect(global, &desired).await?;
    let project = target.project()?;
    let snapshot = target
        .client
        .snapshot(&target.org, &project.project_id)
        .await?;
    warn_targets(&args.planning.targets);
    let plan = crate::plan::plan(&desired.state, &snapshot, &args.planning.options())?;
    let ctx = context(&target, &snapshot, &args.planning.targets);

    match args.format {
        Format::Text => print(&text::render(&ctx, &plan))?,
        Format::Json => print(&json::render(&ctx, &plan))?,
        Format::Markdown => print(&markdown::render(&ctx, &plan))?,
    }
    if crate::render::github::is_github_actions() {
        crate::render::github::step_summary(&markdown::render(&ctx, &plan));
    }

    if let Some(out) = &args.out {
        saved_plan(&ctx, &desired, &snapshot, &plan).write(out)?;
        if args.format == Format::Text && !global.quiet {
            print(&format!(
                "\nSaved the plan to: {}\n\nTo perform exactly these actions, run:\n    meltano-cloud apply {}\n",
                out.display(),
                out.display()
            ))?;
        }
    }

    if global.verbose > 0 {
        eprintln!(
            "{} HTTP request(s) to {}",
            target.client.requests_made(),
            target.client.base_url()
        );
    }

    if args.detailed_exitcode && plan.has_changes() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
