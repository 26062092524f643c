//! `meltano-cloud validate`: checks cloud.yml offline.

use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;

use crate::cli::GlobalArgs;
use crate::spec::check::check_file;
use crate::spec::diagnostics::{Severity, render};
use crate::spec::{FlatDiagnostic, LoadedSpec};

/// Check cloud.yml, the meltano.yml it refers to and the sops files it references.
///
/// Runs offline and needs no decryption key: the JSON Schema, environments and schedules in
/// meltano.yml (following its include_paths), deployment and secret names, and that each
/// referenced sops file holds the referenced key. Every problem is reported, with its file,
/// line and column. Exits 0 when the file is valid and 1 when it is not.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format: `text` for people, `json` for tools (diagnostics with file, line,
    /// column, code, severity and message).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Version of the `--format json` output.
pub const JSON_FORMAT_VERSION: u32 = 1;

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    format_version: u32,
    file: String,
    valid: bool,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [FlatDiagnostic],
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let path = &global.file;
    let (spec, diagnostics) = check_file(path);
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    let valid = errors == 0 && spec.is_some();

    match args.format {
        Format::Json => {
            let flat: Vec<FlatDiagnostic> = diagnostics.iter().map(|d| d.flat()).collect();
            let report = JsonReport {
                format_version: JSON_FORMAT_VERSION,
                file: path.display().to_string(),
                valid,
                errors,
                warnings,
                diagnostics: &flat,
            };
            let text = serde_json::to_string_pretty(&report).map_err(|e| miette::miette!("{e}"))?;
            println!("{text}");
        }
        Format::Text => {
            // In GitHub Actions each problem also becomes an annotation on its line.
            if crate::render::github::is_github_actions() {
                let flat: Vec<FlatDiagnostic> = diagnostics.iter().map(|d| d.flat()).collect();
                crate::render::github::print_annotations(
                    &crate::render::github::annotations_from_flat(&flat),
                );
            }
            let color =
                anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never;
            let mut err = std::io::stderr().lock();
            for d in &diagnostics {
                if global.quiet && d.severity == Severity::Warning {
                    continue;
                }
                let _ = write!(err, "{}", render(d, color));
                let _ = writeln!(err);
            }
            if valid {
                if !global.quiet {
                    println!("{} is valid: {}", path.display(), summary(spec.as_ref()));
                }
                if global.verbose > 0 {
                    if let Some(spec) = &spec {
                        for file in files_read(spec) {
                            println!("  read {file}");
                        }
                    }
                }
            } else if diagnostics
                .iter()
                .any(|d| matches!(d.code, "spec::read" | "spec::encoding"))
            {
                // The diagnostic above already says the file could not be read.
            } else {
                let _ = writeln!(
                    err,
                    "error: {} is invalid: {errors} error{}{}",
                    path.display(),
                    if errors == 1 { "" } else { "s" },
                    if warnings > 0 {
                        format!(
                            ", {warnings} warning{}",
                            if warnings == 1 { "" } else { "s" }
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The files a valid cloud.yml was checked against, for `-v`.
fn files_read(spec: &LoadedSpec) -> Vec<String> {
    let mut files = vec![spec.meltano.file.display().to_string()];
    files.extend(
        spec.meltano
            .included_files
            .iter()
            .map(|f| f.display().to_string()),
    );
    let mut sops: Vec<String> = spec
        .secrets
        .values()
        .map(|s| {
            crate::spec::meltano::join_clean(&spec.dir, &s.file.to_string_lossy())
                .display()
                .to_string()
        })
        .collect();
    sops.sort();
    sops.dedup();
    files.extend(sops);
    files
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn summary(spec: Option<&LoadedSpec>) -> String {
    let Some(spec) = spec else {
        return String::new();
    };
    // A schedule enabled on several deployments counts once toward the distinct schedules,
    // so the figure compares with meltano.yml's; enablements count each deployment's.
    let enabled: usize = spec
        .cloud
        .deployments
        .values()
        .map(|d| d.schedules.len())
        .sum();
    let distinct: std::collections::BTreeSet<&str> = spec
        .cloud
        .deployments
        .values()
        .flat_map(|d| d.schedules.iter().map(String::as_str))
        .collect();
    let schedules = if enabled == distinct.len() {
        format!(
            "{} enabled (of {} in meltano.yml)",
            plural(enabled, "schedule"),
            spec.meltano.schedules.len()
        )
    } else {
        format!(
            "{} ({} of {} in meltano.yml)",
            plural(enabled, "schedule enablement"),
            plural(distinct.len(), "distinct schedule"),
            spec.meltano.schedules.len()
        )
    };
    format!(
        "{}, {schedules}, {}",
        plural(spec.cloud.deployments.len(), "deployment"),
        plural(spec.secrets.len(), "secret"),
    )
}
