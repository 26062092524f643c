//! Output for GitHub Actions (`GITHUB_ACTIONS=true`): workflow annotations, the step
//! summary and `::add-mask::`, pinned as trycmd cases in tests/cmd/github/.

use std::path::PathBuf;

fn sops_bin() -> PathBuf {
    match std::env::var_os("SOPS_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => panic!(
            "SOPS_BIN is not set: these tests need the real sops binary; run `bash .ci/setup.sh` \
             and `source .tools/tools.env`"
        ),
    }
}

#[test]
fn github_actions_output_cases() {
    let sops = sops_bin();
    let home = tempfile::tempdir().unwrap();
    trycmd::TestCases::new()
        .default_bin_name("meltano-cloud")
        .env("SOPS_BIN", sops.display().to_string())
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .env("NO_COLOR", "1")
        .env("HOME", home.path().display().to_string())
        .case("tests/cmd/github/*.md");
}

/// Outside GitHub Actions the step summary file is never touched, even when the variable
/// is set (e.g. a developer re-running a CI command locally).
#[test]
fn no_step_summary_outside_github_actions() {
    let sops = sops_bin();
    let dir = tempfile::tempdir().unwrap();
    let project =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd/github/secrets-check.in");
    let summary = dir.path().join("summary.md");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meltano-cloud"))
        .current_dir(&project)
        .args(["secrets", "check"])
        .env("SOPS_BIN", &sops)
        .env("SOPS_AGE_KEY_FILE", project.join("age-key.txt"))
        .env_remove("GITHUB_ACTIONS")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !summary.exists(),
        "the step summary was written outside GitHub Actions"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("::add-mask::"), "{stdout}");
    assert!(
        !stdout.contains("fixture-"),
        "a value was printed: {stdout}"
    );
}
