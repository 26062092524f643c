//! Plan and apply: rendering pinned by trycmd cases (tests/cmd/plan/), and end-to-end runs
//! against a real control plane.

#[test]
fn cli_cases() {
    trycmd::TestCases::new()
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .case("tests/cmd/plan/*.md")
        .case("tests/cmd/plan/*.toml");
}
