use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::cli::GlobalArgs;
use crate::plan::saved::SavedPlan;
use crate::render::plan::{Format, PlanContext, json, markdown, text};

/// Show a saved plan (written by `plan -o FILE`) in any output format.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The saved plan file.
    #[arg(value_name = "PLANFILE")]
    pub planfile: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// The context line of a saved plan.
pub fn context(saved: &SavedPlan) -> PlanContext {
    PlanContext {
        control_plane: saved.control_plane.clone(),
        api_url: saved.api_url.clone(),
        org: saved.org.clone(),
        project_name: saved.project_name.clone(),
        project_id: saved.project_id.clone(),
        revision: saved.revision,
        targets: saved.targets.clone(),
    }
}

pub async fn run(_global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let saved = SavedPlan::read(&args.planfile)?;
    let ctx = context(&saved);
    let out = match args.format {
        Format::Text => {
            let mut s = format!("Saved plan {}\n", args.planfile.display());
            s.push_str(&text::render(&ctx, &saved.plan));
            s
        }
        Format::Json => json::render(&ctx, &saved.plan),
        Format::Markdown => markdown::render(&ctx, &saved.plan),
    };
    let mut stdout = anstream::stdout();
    stdout.write_all(out.as_bytes()).into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}
