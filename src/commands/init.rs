//! `meltano-cloud init`: writes a commented cloud.yml for an existing Meltano project.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{Context, IntoDiagnostic, miette};

use crate::cli::GlobalArgs;
use crate::spec::check::is_slug;
use crate::spec::diagnostics::render;
use crate::spec::meltano::{self, MeltanoProject, MeltanoReadError};
use crate::spec::{SpecDiagnostic, parent_dir};

/// Default `$schema` of the editor modeline written at the top of cloud.yml.
pub const SCHEMA_URL: &str =
    "https://github.com/meltano-cloud/meltano-cloud/raw/main/schema/cloud.schema.json";

/// Write a commented cloud.yml for the Meltano project in this folder.
///
/// Reads meltano.yml (following its include_paths) and declares one deployment per
/// environment. Schedules are listed as comments under each deployment, so none is enabled
/// until you choose. Refuses to overwrite an existing file unless `--force` is given.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,

    /// Folder holding meltano.yml, relative to the cloud.yml being written.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub meltano_project: String,

    /// Git branch the deployments track [default: the repository's current branch, else
    /// `main`].
    #[arg(long, value_name = "REV")]
    pub git_rev: Option<String>,

    /// `$schema` of the editor modeline: a URL, or a path relative to cloud.yml.
    #[arg(long, value_name = "URL_OR_PATH", default_value = SCHEMA_URL)]
    pub schema: String,
}

pub async fn run(global: &GlobalArgs, mut args: Args) -> miette::Result<ExitCode> {
    let path = &global.file;
    if path.exists() && !args.force {
        return Err(miette!(
            code = "init::exists",
            help = "pass `--force` to overwrite it, or `--file PATH` to write another file",
            "{} already exists",
            path.display()
        ));
    }
    let dir = parent_dir(path);
    let meltano_dir = meltano::join_clean(&dir, &args.meltano_project);
    let mut diags: Vec<SpecDiagnostic> = Vec::new();
    let project = match meltano::read_project(&meltano_dir, &mut diags) {
        Ok(p) => p,
        Err(MeltanoReadError::NotFound(file)) => {
            return Err(miette!(
                code = "init::no_meltano_project",
                help = "run `meltano-cloud init` in a Meltano project (`meltano init` creates one), or pass `--meltano-project DIR`",
                "no meltano.yml found at {}",
                file.display()
            ));
        }
        Err(MeltanoReadError::Io(file, e)) => {
            return Err(miette!("cannot read {}: {e}", file.display()));
        }
    };
    if diags
        .iter()
        .any(|d| d.severity == crate::spec::Severity::Error)
    {
        for d in &diags {
            eprint!("{}", render(d, false));
            eprintln!();
        }
        return Err(miette!(
            code = "init::invalid_meltano_project",
            help = "fix meltano.yml first",
            "meltano.yml has errors"
        ));
    }
    let name = global
        .project
        .clone()
        .unwrap_or_else(|| project_name(&meltano_dir));
    if args.git_rev.is_none() {
        args.git_rev = current_branch(&dir);
    }
    let text = render_cloud_yml(&project, &name, &args);
    std::fs::write(path, &text)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    let ignored = ignore_local_state(&dir)?;
    if !global.quiet {
        let envs = project.environments.join(", ");
        println!(
            "Wrote {} with {} deployment{}{}; {} schedule{} listed as comments.",
            path.display(),
            project.environments.len(),
            if project.environments.len() == 1 {
                ""
            } else {
                "s"
            },
            if envs.is_empty() {
                String::new()
            } else {
                format!(" ({envs})")
            },
            project.schedules.len(),
            if project.schedules.len() == 1 {
                ""
            } else {
                "s"
            },
        );
        if let Some(gitignore) = ignored {
            println!(
                "Added `.meltano/` to {} (the local control plane keeps its database and key there).",
                gitignore.display()
            );
        }
        println!("Next: enable schedules and add secrets, then run `meltano-cloud validate`.");
    }
    Ok(ExitCode::SUCCESS)
}

/// The branch checked out in the git repository holding `dir` (also before its first
/// commit), or `None` outside a repository or on a detached HEAD.
fn current_branch(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .args(["symbolic-ref", "--quiet", "--short", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let branch = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !branch.is_empty()).then_some(branch)
}

/// Appends `.meltano/` to the .gitignore beside cloud.yml unless it is already listed:
/// the local control plane keeps its database and at-rest key under `.meltano/cloud/`, and
/// committing both would leak every secret set locally. Returns the file when it changed.
fn ignore_local_state(dir: &Path) -> miette::Result<Option<PathBuf>> {
    let gitignore = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&gitignore) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(miette!(
                code = "init::gitignore",
                help = "add `.meltano/` to .gitignore yourself",
                "cannot read {}: {e}",
                gitignore.display()
            ));
        }
    };
    let listed = existing.lines().map(str::trim).any(|l| {
        matches!(
            l,
            ".meltano" | ".meltano/" | "/.meltano" | "/.meltano/" | ".meltano/*" | "/.meltano/*"
        )
    });
    if listed {
        return Ok(None);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(".meltano/\n");
    std::fs::write(&gitignore, text)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", gitignore.display()))?;
    Ok(Some(gitignore))
}

/// The project name: the Meltano project's folder name, as a slug.
fn project_name(meltano_dir: &Path) -> String {
    // `cloud.yml` in the current folder gives an empty folder path; resolve that as `.`.
    let dir = if meltano_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        meltano_dir
    };
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| PathBuf::from(dir));
    let raw = abs
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let slug = deployment_name(&raw);
    if slug.is_empty() {
        "my-project".into()
    } else {
        slug
    }
}

fn deployment_name(env: &str) -> String {
    if is_slug(env) && env.len() <= 63 {
        return env.to_string();
    }
    let mut s: String = env
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-')
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !matches!(s, "true" | "false" | "null" | "yes" | "no" | "on" | "off")
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The commented cloud.yml for a Meltano project.
pub fn render_cloud_yml(project: &MeltanoProject, name: &str, args: &Args) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# yaml-language-server: $schema={}", args.schema);
    out.push_str(
        "# The cloud setup of this Meltano project. Check it with `meltano-cloud validate`,\n\
         # preview changes with `meltano-cloud plan` and make them with `meltano-cloud apply`.\n\
         version: 1\n",
    );
    let _ = writeln!(out, "# The control-plane project this file manages.");
    let _ = writeln!(out, "project: {}", yaml_str(name));
    let _ = writeln!(out, "# Folder holding meltano.yml, relative to this file.");
    let _ = writeln!(out, "meltano_project: {}", yaml_str(&args.meltano_project));
    out.push('\n');
    if project.environments.is_empty() {
        out.push_str(
            "# meltano.yml defines no environments yet: add some (`meltano environment add prod`),\n\
             # then declare one deployment per environment here.\n\
             deployments: {}\n",
        );
    } else {
        out.push_str(
            "# One deployment per Meltano environment. The schedules listed on a deployment are\n\
             # enabled on it; every other schedule is disabled. Uncomment the ones to run.\n\
             deployments:\n",
        );
        let width = project
            .schedules
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        let mut used: Vec<String> = Vec::new();
        for env in &project.environments {
            let protected = matches!(env.as_str(), "prod" | "production" | "prd");
            // Environments that differ only in case or punctuation get distinct names.
            let base = deployment_name(env);
            let base = if base.is_empty() {
                "deployment".to_string()
            } else {
                base
            };
            let mut name = base.clone();
            let mut n = 2;
            while used.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            used.push(name.clone());
            let _ = writeln!(out, "  {}:", yaml_str(&name));
            let _ = writeln!(out, "    environment: {}", yaml_str(env));
            let _ = writeln!(
                out,
                "    git_rev: {}  # branch, tag or commit to track",
                yaml_str(args.git_rev.as_deref().unwrap_or("main"))
            );
            if project.schedules.is_empty() {
                let _ = writeln!(out, "    schedules: []");
            } else {
                let _ = writeln!(out, "    schedules:");
                for s in &project.schedules {
                    let what = match (&s.job, &s.extractor, &s.loader) {
                        (Some(job), _, _) => format!("job {job}"),
                        (None, Some(e), Some(l)) => format!("{e} -> {l}"),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "      # - {:<width$}  # {}, {}",
                        s.name, s.interval, what
                    );
                }
            }
            if protected {
                let _ = writeln!(out, "    protected: true  # apply never deletes it");
            }
        }
    }
    out.push_str(
        "\n# Secrets: environment variables for every run, each read from a sops-encrypted file\n\
         # (relative to this file). `validate` and `plan` need no key; `apply` decrypts.\n\
         secrets:\n\
         #  TAP_GITHUB_AUTH_TOKEN: { sops: secrets/prod.sops.yaml, key: tap_github.auth_token }\n\
         \n\
         # Delete remote objects this file does not declare (off: they are only reported).\n\
         prune:\n  deployments: false\n  secrets: false\n",
    );
    out
}
