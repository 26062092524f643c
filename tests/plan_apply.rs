//! Plan and apply: rendering pinned by trycmd cases (tests/cmd/plan/), and end-to-end runs
//! of the real binary against a real control plane on 127.0.0.1 (SQLite and PostgreSQL).

mod support;

#[path = "plan_apply/e2e.rs"]
mod e2e;

#[test]
fn cli_cases() {
    trycmd::TestCases::new()
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        // `--help` shows these variables' values: keep them fixed.
        .env("MELTANO_CLOUD_API_URL", "")
        .env("MELTANO_CLOUD_TOKEN", "")
        .env("MELTANO_CLOUD_ORG", "")
        .env("MELTANO_CLOUD_PROJECT", "")
        .case("tests/cmd/plan/*.md")
        .case("tests/cmd/plan/*.toml");
}
