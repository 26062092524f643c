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
