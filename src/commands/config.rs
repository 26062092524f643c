//! `meltano-cloud config env list|set|delete`: the project's secrets, injected into runs
//! as environment variables. Values are write-only: listing shows names only.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use miette::IntoDiagnostic;
use zeroize::Zeroizing;

use crate::api::SetSecret;
use crate::cli::GlobalArgs;
use crate::cli::target::{confirm, connect, did_you_mean};
use crate::render::table::{Format, Table, print_list};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The project's secrets, injected into every run as environment variables.
    #[command(subcommand)]
    Env(EnvCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum EnvCommand {
    /// List the names of the project's secrets (values are never shown).
    List(ListArgs),
    /// Set a secret. The value is read from a prompt that does not echo, or from stdin.
    Set(SetArgs),
    /// Delete a secret (asks for confirmation; --yes when not on a terminal).
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Show at most this many secrets.
    #[arg(long, default_value_t = 125)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Terminal)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// Name of the environment variable, e.g. TAP_GITLAB_PASSWORD.
    #[arg(long)]
    pub key: String,
    /// The value. Prefer the prompt or stdin: a value on the command line stays in the
    /// shell history and is visible to other users in the process list.
    #[arg(long)]
    pub value: Option<String>,
    /// Store an empty value. Without it an empty value is refused: it usually comes from an
    /// unset shell variable (`echo "$TYPO" | meltano-cloud config env set ...`).
    #[arg(long)]
    pub allow_empty: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Name of the secret.
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

fn check_name(name: &str) -> miette::Result<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(miette::miette!(
            code = "config::invalid_name",
            help = "use letters, digits and underscores, not starting with a digit, e.g. TAP_GITLAB_PASSWORD",
            "`{name}` is not a valid environment variable name"
        ))
    }
}

fn read_value(key: &str, flag: Option<String>) -> miette::Result<Zeroizing<String>> {
    if let Some(v) = flag {
        return Ok(Zeroizing::new(v));
    }
    if std::io::stdin().is_terminal() {
        let v = rpassword::prompt_password(format!("Value of {key}: ")).into_diagnostic()?;
        return Ok(Zeroizing::new(v));
    }
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut buf)
        .into_diagnostic()?;
    // One trailing newline comes from `echo` or a file's last line; keep everything else.
    let trimmed = buf
        .strip_suffix("\r\n")
        .or_else(|| buf.strip_suffix('\n'))
        .unwrap_or(&buf);
    Ok(Zeroizing::new(trimmed.to_string()))
}

pub async fn run(global: &GlobalArgs, cmd: Command) -> miette::Result<ExitCode> {
    let Command::Env(cmd) = cmd;
    let target = connect(global, None).await?;
    target.announce(global);
    let (org, pid) = target.ids()?;
    let client = &target.client;
    match cmd {
        EnvCommand::List(args) => {
            let paged = client.all_secrets(org, pid, Some(args.limit)).await?;
            let mut table = Table::new(&["NAME", "SET BY"]).keys(&[0]);
            for s in &paged.items {
                let by = if s.fingerprint.is_some() {
                    "apply (cloud.yml)"
                } else {
                    "hand"
                };
                table.push(vec![s.name.clone(), by.into()]);
            }
            print_list(
                args.format,
                &table,
                &paged.items,
                paged.more,
                "secrets",
                "Raise --limit to see more.",
            )?;
        }
        EnvCommand::Set(args) => {
            check_name(&args.key)?;
            let value = read_value(&args.key, args.value)?;
            if value.is_empty() && !args.allow_empty {
                return Err(miette::miette!(
                    code = "config::empty_value",
                    help = "pass --allow-empty to store an empty value on purpose; otherwise \
                            check the variable or file that should hold the value",
                    "the value of `{}` is empty; nothing was stored",
                    args.key
                ));
            }
            let body = SetSecret {
                name: args.key.clone(),
                value: value.to_string(),
                fingerprint: None,
            };
            let result = client.set_secret(org, pid, &body).await;
            // The body held the value: wipe it as soon as it is sent.
            let SetSecret { mut value, .. } = body;
            zeroize::Zeroize::zeroize(&mut value);
            result?;
            println!("Set secret `{}`.", args.key);
        }
        EnvCommand::Delete(args) => {
            let all = client.all_secrets(org, pid, None).await?;
            if !all.items.iter().any(|s| s.name == args.name) {
                let names: Vec<&str> = all.items.iter().map(|s| s.name.as_str()).collect();
                let help = match did_you_mean(&args.name, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "list the secrets with `meltano-cloud config env list`".into(),
                };
                return Err(miette::miette!(
                    code = "api::not_found",
                    help = help,
                    "secret `{}` was not found in project `{}`",
                    args.name,
                    target.project()?.project_name
                ));
            }
            confirm(&format!("delete secret `{}`", args.name), args.yes)?;
            client.delete_secret(org, pid, &args.name).await?;
            println!("Deleted secret `{}`.", args.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
