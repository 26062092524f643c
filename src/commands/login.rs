//! `meltano-cloud login`: verifies a token against the control plane and stores it.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use miette::{Diagnostic, IntoDiagnostic};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::api::client::Client;
use crate::cli::GlobalArgs;
use crate::settings::{Settings, settings_path};

/// Log in to a control plane: check a token and store it with the URL in the settings file.
///
/// The token is read from a prompt that does not echo, from stdin with --token-stdin, or
/// from MELTANO_CLOUD_TOKEN. The settings file (mode 0600) is in the platform's config dir,
/// or at --config-path.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read the token from stdin (for scripts: `echo "$TOKEN" | meltano-cloud login --token-stdin`).
    #[arg(long)]
    pub token_stdin: bool,
}

#[derive(Debug, Error, Diagnostic)]
pub enum LoginError {
    #[error("no control plane URL to log in to")]
    #[diagnostic(
        code(login::no_url),
        help(
            "pass --api-url URL (or set MELTANO_CLOUD_API_URL), e.g. `meltano-cloud login --api-url http://127.0.0.1:8080`"
        )
    )]
    NoUrl,
    #[error("the local control plane needs no login")]
    #[diagnostic(
        code(login::local),
        help("commands use the local control plane when no --api-url is given")
    )]
    Local,
    #[error("no token given and stdin is not a terminal to ask for one")]
    #[diagnostic(
        code(login::no_token),
        help("pipe the token with --token-stdin, or set MELTANO_CLOUD_TOKEN")
    )]
    NoToken,
    #[error("the token is empty")]
    #[diagnostic(
        code(login::empty_token),
        help("paste the token printed by `meltano-cloud admin token create`")
    )]
    EmptyToken,
}

fn read_token(global: &GlobalArgs, args: &Args) -> miette::Result<Zeroizing<String>> {
    let token = if args.token_stdin {
        let mut buf = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut buf)
            .into_diagnostic()?;
        Zeroizing::new(buf.trim().to_string())
    } else if let Some(t) = global.token.as_ref().filter(|t| !t.trim().is_empty()) {
        Zeroizing::new(t.trim().to_string())
    } else if std::io::stdin().is_terminal() {
        let t = rpassword::prompt_password("API token: ").into_diagnostic()?;
        Zeroizing::new(t.trim().to_string())
    } else {
        return Err(LoginError::NoToken.into());
    };
    if token.is_empty() {
        return Err(LoginError::EmptyToken.into());
    }
    Ok(token)
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let path = settings_path(global.config_path.as_deref())?;
    let mut settings = Settings::load(&path)?;
    let url = global
        .api_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| settings.clone().with_env_overrides().base_url)
        .ok_or(LoginError::NoUrl)?;
    if url.trim() == "local" {
        return Err(LoginError::Local.into());
    }
    let token = read_token(global, &args)?;
    let client = Client::new(url.trim(), Some(token.to_string()))?;
    let who = client.whoami().await?;
    let base = client.base_url().to_string();
    if settings.base_url.as_deref() != Some(base.as_str()) {
        // Defaults remembered for another control plane do not apply to this one.
        settings.default_projects.clear();
        settings.default_deployments.clear();
    }
    settings.base_url = Some(base.clone());
    settings.token = Some(token.to_string());
    settings.org = Some(who.tenant_resource_key.clone());
    settings.save(&path)?;
    if !global.quiet {
        eprintln!(
            "Logged in to {base} as {} of organization `{}`{}.",
            who.role.as_str(),
            who.tenant_resource_key,
            who.token_name
                .as_deref()
                .map(|n| format!(" (token `{n}`)"))
                .unwrap_or_default()
        );
        eprintln!("Settings saved to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
