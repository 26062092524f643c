//! `meltano-cloud logout`: forgets the stored token.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::settings::{Settings, settings_path};

/// Forget the token stored by `login` (the URL and remembered defaults stay).
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(global: &GlobalArgs, _args: Args) -> miette::Result<ExitCode> {
    let path = settings_path(global.config_path.as_deref())?;
    let mut settings = Settings::load(&path)?;
    let Some(_) = settings.token.take() else {
        if !global.quiet {
            eprintln!("Not logged in: {} holds no token.", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    settings.save(&path)?;
    if !global.quiet {
        eprintln!(
            "Logged out of {}; the token was removed from {}.",
            settings.base_url.as_deref().unwrap_or("the control plane"),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
