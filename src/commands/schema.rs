//! `meltano-cloud schema`: prints the JSON Schema of cloud.yml.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::{Context, IntoDiagnostic};

use crate::cli::GlobalArgs;
use crate::spec::schema::cloud_schema_text;

/// Print the JSON Schema of cloud.yml (draft 2020-12).
///
/// Editors use it for completion, hover and validation: put
/// `# yaml-language-server: $schema=<path or URL of the schema>` on the first line of
/// cloud.yml. The schema is generated from the same types `validate` uses; the copy in the
/// repository is `schema/cloud.schema.json`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the schema to this file instead of standard output.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

pub async fn run(_global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let text = cloud_schema_text();
    match args.output {
        Some(path) => std::fs::write(&path, text)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
