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
