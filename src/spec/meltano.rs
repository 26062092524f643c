//! Reading the parts of a Meltano project that cloud.yml refers to: environments,
//! schedules and jobs, from `meltano.yml` and the files its `include_paths` globs match
//! (relative to the project folder, as Meltano resolves them).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::diagnostics::{SourceFile, SpecDiagnostic};
use super::yaml_file;

/// What cloud.yml needs from a Meltano project.
#[derive(Debug, Clone, Default)]
pub struct MeltanoProject {
    /// The project folder (holding meltano.yml).
    pub dir: PathBuf,
    /// The meltano.yml path.
    pub file: PathBuf,
    /// Environment names, in file order.
    pub environments: Vec<String>,
    pub schedules: Vec<Schedule>,
    pub jobs: Vec<Job>,
    /// Files read through `include_paths`, in the order Meltano merges them.
    pub included_files: Vec<PathBuf>,
}

/// A Meltano schedule: either a job or an extractor/loader pair, on a cron interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    /// Cron expression or preset (`@daily`, `@hourly`...).
    pub interval: String,
    /// The job it runs, for job schedules.
    pub job: Option<String>,
    /// The extractor, for extractor/loader schedules.
    pub extractor: Option<String>,
    /// The loader, for extractor/loader schedules.
    pub loader: Option<String>,
    /// The file defining it.
    pub file: PathBuf,
}

/// A Meltano job: a named list of tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    /// Each task as Meltano would run it (`tap-x target-y`, `dbt-postgres:run`).
    pub tasks: Vec<String>,
}

impl MeltanoProject {
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    pub fn has_environment(&self, name: &str) -> bool {
        self.environments.iter().any(|e| e == name)
    }
}

/// Outcome of [`read_project`] when there is no meltano.yml to read.
#[derive(Debug)]
pub enum MeltanoReadError {
    NotFound(PathBuf),
    Io(PathBuf, std::io::Error),
}

/// Reads `dir/meltano.yml` and its included files. Problems inside the files are pushed to
/// `diags` and the project is returned with what could be read.
pub fn read_project(
    dir: &Path,
    diags: &mut Vec<SpecDiagnostic>,
) -> Result<MeltanoProject, MeltanoReadError> {
    let file = join_clean(dir, "meltano.yml");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            MeltanoReadError::NotFound(file.clone())
        } else {
            MeltanoReadError::Io(file.clone(), e)
        }
    })?;
    let mut project = MeltanoProject {
        dir: dir.to_path_buf(),
        file: file.clone(),
        ..Default::default()
    };
    let Some((source, doc)) = yaml_file(&file, text, diags) else {
        return Ok(project);
    };
    let root = &doc.value;
    if !root.is_object() {
        diags.push(
            SpecDiagnostic::error("meltano::invalid", &source, "meltano.yml must be a mapping")
                .label(doc.spans[""].value.clone(), "expected a mapping")
                .help("see https://docs.meltano.com/reference/meltano-yml/"),
        );
        return Ok(project);
    }
    let mut seen = Seen::default();
    read_parts(&source, &doc, &mut project, &mut seen, diags);

    if let Some(paths) = root.get("include_paths") {
        let span = |p: &str| span_at(&doc.spans, p);
        let Some(list) = paths.as_array() else {
            diags.push(
                SpecDiagnostic::error(
                    "meltano::invalid",
                    &source,
                    "`include_paths` must be a list of glob patterns",
                )
                .label(span("/include_paths"), "expected a list"),
            );
            return Ok(project);
        };
        for (i, pattern) in list.iter().enumerate() {
            let ptr = format!("/include_paths/{i}");
            let Some(pattern) = pattern.as_str() else {
                diags.push(
                    SpecDiagnostic::error(
                        "meltano::invalid",
                        &source,
                        "an include path must be a string",
                    )
                    .label(span(&ptr), "expected a glob pattern"),
                );
                continue;
            };
            let full = join_clean(dir, pattern.trim_start_matches("./"));
            let matches = match glob::glob(&full.to_string_lossy()) {
                Ok(paths) => {
                    let mut v: Vec<PathBuf> = paths
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .collect();
                    v.sort();
                    v
                }
                Err(e) => {
                    diags.push(
                        SpecDiagnostic::error(
                            "meltano::include_glob",
                            &source,
                            format!("invalid glob pattern: {}", e.msg),
                        )
                        .label(span(&ptr), "invalid pattern"),
                    );
                    continue;
                }
            };
            if matches.is_empty() {
                diags.push(
                    SpecDiagnostic::error(
                        "meltano::include_empty",
                        &source,
                        format!("include path `{pattern}` matches no file"),
                    )
                    .label(span(&ptr), "matches nothing")
                    .help("include paths are relative to the Meltano project folder")
                    .warning(),
                );
            }
            for path in matches {
                if path == file || project.included_files.contains(&path) {
                    continue;
                }
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        diags.push(SpecDiagnostic::no_source(
                            "meltano::read",
                            &path,
                            format!("cannot read included file {}: {e}", path.display()),
                        ));
                        continue;
                    }
                };
                project.included_files.push(path.clone());
                if let Some((src, d)) = yaml_file(&path, text, diags) {
                    if d.value.is_object() {
                        read_parts(&src, &d, &mut project, &mut seen, diags);
                    } else if !d.value.is_null() {
                        diags.push(
                            SpecDiagnostic::error(
                                "meltano::invalid",
                                &src,
                                "an included Meltano file must be a mapping",
                            )
                            .label(span_at(&d.spans, ""), "expected a mapping"),
                        );
                    }
                }
            }
        }
    }
    Ok(project)
}

#[derive(Default)]
struct Seen {
    environments: Vec<(String, Arc<SourceFile>, Range<usize>)>,
    schedules: Vec<(String, Arc<SourceFile>, Range<usize>)>,
    jobs: Vec<(String, Arc<SourceFile>, Range<usize>)>,
}

fn span_at(spans: &super::yaml::SpanMap, pointer: &str) -> Range<usize> {
    let mut p = pointer.to_string();
    loop {
        if let Some(s) = spans.get(&p) {
            return s.value.clone();
        }
        match p.rfind('/') {
            Some(i) => p.truncate(i),
            None => return 0..0,
        }
    }
}

fn read_parts(
    source: &Arc<SourceFile>,
    doc: &super::yaml::Document,
    project: &mut MeltanoProject,
    seen: &mut Seen,
    diags: &mut Vec<SpecDiagnostic>,
) {
    let span = |p: &str| span_at(&doc.spans, p);
    for section in ["environments", "schedules", "jobs"] {
        let Some(items) = doc.value.get(section) else {
            continue;
        };
        if items.is_null() {
            continue;
        }
        let Some(items) = items.as_array() else {
            diags.push(
                SpecDiagnostic::error(
                    "meltano::invalid",
                    source,
                    format!("`{section}` must be a list"),
                )
                .label(span(&format!("/{section}")), "expected a list"),
            );
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let ptr = format!("/{section}/{i}");
            let Some(name) = item.get("name").and_then(Value::as_str) else {
                diags.push(
                    SpecDiagnostic::error(
                        "meltano::invalid",
                        source,
                        format!("every entry of `{section}` needs a `name`"),
                    )
                    .label(span(&ptr), "no name"),
                );
                continue;
            };
            let name_span = span(&format!("{ptr}/name"));
            let list = match section {
                "environments" => &mut seen.environments,
                "schedules" => &mut seen.schedules,
                _ => &mut seen.jobs,
            };
            if let Some((_, first_src, first_span)) = list.iter().find(|(n, _, _)| n == name) {
                let singular = section.trim_end_matches('s');
                let mut d = SpecDiagnostic::error(
                    "meltano::duplicate_name",
                    source,
                    format!("{singular} `{name}` is defined twice"),
                )
                .label(name_span.clone(), "defined again here");
                if Arc::ptr_eq(first_src, source) {
                    d = d.label(first_span.clone(), "first defined here");
                } else {
                    d = d.help(format!(
                        "it is first defined in {}",
                        first_src.path.display()
                    ));
                }
                diags.push(d);
                continue;
            }
            list.push((name.to_string(), source.clone(), name_span));
            match section {
                "environments" => project.environments.push(name.to_string()),
                "schedules" => {
                    let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
                    let Some(interval) = text("interval") else {
                        diags.push(
                            SpecDiagnostic::error(
                                "meltano::invalid",
                                source,
                                format!("schedule `{name}` has no `interval`"),
                            )
                            .label(span(&ptr), "no interval")
                            .help("add a cron expression or preset, e.g. `interval: '@daily'`"),
                        );
                        continue;
                    };
                    project.schedules.push(Schedule {
                        name: name.to_string(),
                        interval,
                        job: text("job"),
                        extractor: text("extractor"),
                        loader: text("loader"),
                        file: source.path.clone(),
                    });
                }
                _ => {
                    let tasks = match item.get("tasks") {
                        Some(Value::String(s)) => vec![s.clone()],
                        Some(Value::Array(a)) => a
                            .iter()
                            .map(|t| match t {
                                Value::Array(parts) => parts
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(" "),
                                other => other.as_str().unwrap_or_default().to_string(),
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    project.jobs.push(Job {
                        name: name.to_string(),
                        tasks,
                    });
                }
            }
        }
    }
}

/// Joins `rel` to `base`, leaving out `.` components so displayed paths stay short.
pub fn join_clean(base: &Path, rel: &str) -> PathBuf {
    let mut out = base.to_path_buf();
    for part in Path::new(rel).components() {
        match part {
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_environments_schedules_jobs_and_includes() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "meltano.yml",
            "version: 1\ninclude_paths: ['./sub/*.meltano.yml']\nenvironments:\n- name: dev\n- name: prod\n\
             schedules:\n- name: daily\n  interval: '@daily'\n  job: all\njobs:\n- name: all\n  tasks:\n  - tap-a target-b\n  - [dbt:run, dbt:test]\n",
        );
        write(
            tmp.path(),
            "sub/extra.meltano.yml",
            "schedules:\n- name: hourly\n  interval: '0 * * * *'\n  extractor: tap-a\n  loader: target-b\n",
        );
        let mut diags = Vec::new();
        let p = read_project(tmp.path(), &mut diags).unwrap();
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(p.environments, vec!["dev", "prod"]);
        assert_eq!(p.schedules.len(), 2);
        assert_eq!(
            p.schedule("hourly").unwrap().extractor.as_deref(),
            Some("tap-a")
        );
        assert_eq!(
            p.job("all").unwrap().tasks,
            vec!["tap-a target-b", "dbt:run dbt:test"]
        );
        assert_eq!(p.included_files.len(), 1);
    }

    #[test]
    fn duplicates_and_missing_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_project(tmp.path(), &mut Vec::new()),
            Err(MeltanoReadError::NotFound(_))
        ));
        write(
            tmp.path(),
            "meltano.yml",
            "environments:\n- name: dev\n- name: dev\n",
        );
        let mut diags = Vec::new();
        let p = read_project(tmp.path(), &mut diags).unwrap();
        assert_eq!(p.environments, vec!["dev"]);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, "meltano::duplicate_name");
        assert_eq!(diags[0].line_col(), (3, 9));
    }
}
