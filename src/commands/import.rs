use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::Snapshot;
use crate::cli::GlobalArgs;
use crate::cli::target;
use crate::commands::plan::print;

/// Write a cloud.yml from a project's live state, to adopt an existing project.
///
/// Deployments are written with their environment, tracked rev and enabled schedules.
/// Secret values are write-only and cannot be read, so secrets are listed as commented
/// references to a sops file to fill in. A plan right after import shows no deployment or
/// schedule changes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite the file when it exists.
    #[arg(long)]
    pub force: bool,

    /// Folder holding meltano.yml, relative to the written file.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub meltano_project: String,

    /// The sops file the secret references point to (relative to the written file)
    /// [default: secrets/<project>.sops.yaml].
    #[arg(long, value_name = "PATH")]
    pub sops_file: Option<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImportError {
    #[error("{path} already exists")]
    #[diagnostic(
        code(import::exists),
        help("pass --force to overwrite it, or --file to write elsewhere")
    )]
    Exists { path: String },
    #[error("cannot write {path}: {source}")]
    #[diagnostic(
        code(import::write),
        help("check that the folder exists and is writable")
    )]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A YAML scalar: plain when unambiguous, JSON-quoted otherwise.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !s.starts_with(['-', '.'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The cloud.yml text for a snapshot.
pub fn render(snapshot: &Snapshot, meltano_project: &str, sops_file: &str) -> String {
    let p = &snapshot.project;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `meltano-cloud import` from project {} (revision {}).",
        p.project_name, snapshot.revision
    );
    let _ = writeln!(out, "version: 1");
    let _ = writeln!(out, "project: {}", scalar(&p.project_name));
    let _ = writeln!(out, "meltano_project: {}", scalar(meltano_project));
    if snapshot.deployments.is_empty() {
        let _ = writeln!(out, "deployments: {{}}");
    } else {
        let _ = writeln!(out, "deployments:");
    }
    let mut deployments: Vec<_> = snapshot.deployments.iter().collect();
    deployments.sort_by(|a, b| {
        a.deployment
            .deployment_name
            .cmp(&b.deployment.deployment_name)
    });
    for d in deployments {
        let dep = &d.deployment;
        let mut enabled: Vec<&str> = d
            .schedules
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.schedule_name.as_str())
            .collect();
        enabled.sort();
        let _ = writeln!(out, "  {}:", scalar(&dep.deployment_name));
        let _ = writeln!(out, "    environment: {}", scalar(&dep.environment_name));
        let _ = writeln!(out, "    git_rev: {}", scalar(&dep.git_rev));
        if dep.protected {
            let _ = writeln!(out, "    protected: true");
        }
        let list: Vec<String> = enabled.iter().map(|s| scalar(s)).collect();
        let _ = writeln!(out, "    schedules: [{}]", list.join(", "));
    }
    let mut names: Vec<&str> = snapshot
        .secrets
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| !crate::plan::desired::RESERVED_SECRETS.contains(n))
        .collect();
    names.sort();
    if !names.is_empty() {
        let _ = writeln!(
            out,
            "# The project has these secrets. Their values cannot be read back: put each one in\n# {sops_file} (encrypted with sops), then uncomment the block below."
        );
        let _ = writeln!(out, "# secrets:");
        for n in names {
            let _ = writeln!(out, "#   {n}: {{ sops: {} }}", scalar(sops_file));
        }
    }
    let _ = writeln!(
        out,
        "prune:          # delete remote objects this file does not declare\n  deployments: false\n  secrets: false"
    );
    out
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let path: PathBuf = global.file.clone();
    if path.exists() && !args.force {
        return Err(ImportError::Exists {
            path: path.display().to_string(),
        }
        .into());
    }
    let target = target::connect(global, None).await?;
    let project = target.project()?.clone();
    target.announce(global);
    let snapshot = target
        .client
        .snapshot(&target.org, &project.project_id)
        .await?;
    let sops_file = args
        .sops_file
        .clone()
        .unwrap_or_else(|| format!("secrets/{}.sops.yaml", project.project_name));
    let text = render(&snapshot, &args.meltano_project, &sops_file);
    std::fs::write(&path, text).map_err(|source| ImportError::Write {
        path: path.display().to_string(),
        source,
    })?;
    let secrets = snapshot
        .secrets
        .iter()
        .filter(|s| !crate::plan::desired::RESERVED_SECRETS.contains(&s.name.as_str()))
        .count();
    print(&format!(
        "Wrote {} with {} and {} to fill in.\nRun `meltano-cloud plan` to check it matches the control plane.\n",
        path.display(),
        count(snapshot.deployments.len(), "deployment", "deployments"),
        count(secrets, "secret reference", "secret references"),
    ))?;
    if let Err(err) = crate::spec::load(&path) {
        // The file is written either way: each problem is a warning to fix next.
        for mut d in err.diagnostics {
            d.severity = crate::spec::Severity::Warning;
            if d.code == "spec::meltano_missing" {
                d.help = Some(
                    "run `import` in the folder that holds meltano.yml, or edit `meltano_project` in the written file".into(),
                );
            }
            eprintln!("{:?}", miette::Report::new(d));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
