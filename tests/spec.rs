//! cloud.yml loading and validation through the real binary: trycmd cases under
//! tests/cmd/spec (help, validate on valid files and one case per kind of error, init,
//! schema), the committed schema against the generated one, and a property test showing
//! the loader never panics.

#[path = "spec/props.rs"]
mod props;

#[test]
fn cli_cases() {
    trycmd::TestCases::new()
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .case("tests/cmd/spec/*.toml")
        .case("tests/cmd/spec/*.md");
}

#[test]
fn committed_schema_matches_generated() {
    let committed = std::fs::read_to_string("schema/cloud.schema.json")
        .expect("schema/cloud.schema.json exists");
    let generated = meltano_cloud::spec::schema::cloud_schema_text();
    assert!(
        committed == generated,
        "schema/cloud.schema.json is out of date with src/spec/model.rs; regenerate it with\n\
         \n    cargo run -- schema --output schema/cloud.schema.json\n"
    );
}

#[test]
fn examples_reference_the_committed_schema() {
    for example in ["jaffle-shop", "acme-analytics"] {
        let text = std::fs::read_to_string(format!("examples/{example}/cloud.yml")).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../../schema/cloud.schema.json\n"),
            "examples/{example}/cloud.yml must start with the schema modeline"
        );
        let spec = meltano_cloud::spec::load(std::path::Path::new(&format!(
            "examples/{example}/cloud.yml"
        )))
        .unwrap_or_else(|e| panic!("{example}: {:?}", e.flat()));
        assert!(!spec.secrets.is_empty());
    }
}

/// An independent validator (check-jsonschema, Python) agrees: the schema is valid 2020-12,
/// the examples conform, and a misspelled field is rejected.
#[test]
fn check_jsonschema_agrees() {
    let bin = std::env::var("CHECK_JSONSCHEMA_BIN").unwrap_or_else(|_| {
        panic!(
            "CHECK_JSONSCHEMA_BIN is not set: run `bash .ci/setup.sh` and `source .tools/tools.env`"
        )
    });
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {bin}: {e}: run `bash .ci/setup.sh` and `source .tools/tools.env`"
                )
            });
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, out) = run(&["--check-metaschema", "schema/cloud.schema.json"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "--schemafile",
        "schema/cloud.schema.json",
        "examples/jaffle-shop/cloud.yml",
        "examples/acme-analytics/cloud.yml",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "--schemafile",
        "schema/cloud.schema.json",
        "tests/cmd/spec/fixture/unknown-field.yml",
    ]);
    assert!(!ok && out.contains("'schedule' was unexpected"), "{out}");
}

/// The CLI evaluates the schema with draft-7 rules for speed (see `spec::schema::validator`);
/// they must report exactly what draft 2020-12 reports, on every fixture and example.
#[test]
fn draft_7_and_2020_12_report_the_same_errors() {
    use meltano_cloud::spec::schema::build_validator;
    let d7 = build_validator(jsonschema::Draft::Draft7);
    let d2020 = build_validator(jsonschema::Draft::Draft202012);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir("tests/cmd/spec/fixture")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml") && !p.ends_with("meltano.yml"))
        .collect();
    files.push("examples/jaffle-shop/cloud.yml".into());
    files.push("examples/acme-analytics/cloud.yml".into());
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let Ok((doc, _)) = meltano_cloud::spec::yaml::parse(&text) else {
            continue;
        };
        let errors = |v: &jsonschema::Validator| {
            let mut e: Vec<String> = v
                .iter_errors(&doc.value)
                .map(|e| format!("{} {:?}", e.instance_path.as_str(), e.kind))
                .collect();
            e.sort();
            e
        };
        assert_eq!(errors(&d7), errors(&d2020), "{}", file.display());
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} files checked");
}
