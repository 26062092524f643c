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

#[path = "support/mod.rs"]
mod support;

mod action {
    //! The composite action's scripts (.github/actions/*.sh) run for real against a real
    //! server: outputs, saved plan, step summary, apply of the saved plan.

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    use super::support::{BIN, TestRepo, TestServer};

    const CLOUD_YML: &str = "version: 1
project: jaffle-shop
deployments:
  production:
    environment: prod
    git_rev: main
    schedules: [daily-refresh]
";

    struct Setup {
        repo: TestRepo,
        server: TestServer,
        org: String,
        token: String,
        tmp: tempfile::TempDir,
    }

    impl Setup {
        fn new() -> Setup {
            let repo = TestRepo::new();
            repo.commit_file("cloud.yml", CLOUD_YML);
            let server = TestServer::start_sqlite();
            let (org, _pid, _owner) = server.bootstrap(&repo);
            let token = server.token(&org, "maintainer");
            Setup {
                repo,
                server,
                org,
                token,
                tmp: tempfile::tempdir().unwrap(),
            }
        }

        fn env(&self, cmd: &mut Command) {
            let bin_dir = Path::new(BIN).parent().unwrap();
            let path = format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            cmd.current_dir(self.repo.path())
                .env("PATH", path)
                .env("MELTANO_CLOUD_API_URL", self.server.url())
                .env("MELTANO_CLOUD_TOKEN", &self.token)
                .env("MELTANO_CLOUD_ORG", &self.org)
                .env(
                    "MELTANO_CLOUD_CONFIG_PATH",
                    self.tmp.path().join("settings.toml"),
                )
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_STEP_SUMMARY", self.tmp.path().join("summary.md"))
                .env("GITHUB_OUTPUT", self.tmp.path().join("output.txt"))
                .env("RUNNER_TEMP", self.tmp.path())
                .env_remove("GITHUB_WORKSPACE")
                .env_remove("CI");
        }

        /// `bash .github/actions/run.sh` as the action's run step does it.
        fn action(&self, command: &str, plan_file: &str, cloud_file: &str) -> Output {
            let _ = std::fs::remove_file(self.tmp.path().join("output.txt"));
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/actions/run.sh");
            let mut cmd = Command::new("bash");
            cmd.arg(script);
            self.env(&mut cmd);
            cmd.env("COMMAND", command)
                .env("CLOUD_FILE", cloud_file)
                .env("PLAN_FILE", plan_file)
                .env("EXTRA_ARGS", "")
                .env("INPUT_SOPS_AGE_KEY", "");
            cmd.output().unwrap()
        }

        fn cli(&self, args: &[&str]) -> Output {
            let mut cmd = Command::new(BIN);
            self.env(&mut cmd);
            cmd.args(args).output().unwrap()
        }

        /// The step outputs written to GITHUB_OUTPUT (`name=value` and heredoc form).
        fn outputs(&self) -> BTreeMap<String, String> {
            let text =
                std::fs::read_to_string(self.tmp.path().join("output.txt")).unwrap_or_default();
            let mut out = BTreeMap::new();
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                if let Some((name, delimiter)) = line.split_once("<<") {
                    let mut value = Vec::new();
                    for l in lines.by_ref() {
                        if l == delimiter {
                            break;
                        }
                        value.push(l);
                    }
                    out.insert(name.to_string(), value.join("\n"));
                } else if let Some((name, value)) = line.split_once('=') {
                    out.insert(name.to_string(), value.to_string());
                }
            }
            out
        }
    }

    fn text(out: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    #[test]
    fn plan_outputs_summary_and_saved_plan_then_apply_it() {
        let s = Setup::new();

        let out = s.action("validate", "", "cloud.yml");
        assert!(out.status.success(), "{}", text(&out));

        let out = s.action("plan", "", "cloud.yml");
        assert!(
            out.status.success(),
            "plan with changes is a success: {}",
            text(&out)
        );
        let outputs = s.outputs();
        assert_eq!(
            outputs.get("has-changes").map(String::as_str),
            Some("true"),
            "{outputs:?}"
        );
        let plan_file = PathBuf::from(&outputs["plan-file"]);
        assert_eq!(plan_file, s.tmp.path().join("meltano-cloud.plan.json"));
        assert!(plan_file.is_file());
        let summary = &outputs["summary"];
        assert!(summary.contains("deployment.production"), "{summary}");

        // The CLI appended the same Markdown plan to the step summary.
        let step_summary = std::fs::read_to_string(s.tmp.path().join("summary.md")).unwrap();
        assert_eq!(step_summary.trim_end(), summary.trim_end());

        // Applying the saved plan, then planning again: no changes.
        let out = s.action("apply", plan_file.to_str().unwrap(), "cloud.yml");
        assert!(out.status.success(), "{}", text(&out));
        let out = s.action("plan", "", "cloud.yml");
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            s.outputs().get("has-changes").map(String::as_str),
            Some("false")
        );

        // The CLI's step summary equals `plan --format markdown`.
        std::fs::remove_file(s.tmp.path().join("summary.md")).unwrap();
        let md = s.cli(&["plan", "--format", "markdown"]);
        assert!(md.status.success(), "{}", text(&md));
        let written = std::fs::read_to_string(s.tmp.path().join("summary.md")).unwrap();
        assert_eq!(
            written.trim_end(),
            String::from_utf8_lossy(&md.stdout).trim_end()
        );
    }

    #[test]
    fn invalid_cloud_yml_fails_the_action_with_annotations() {
        let s = Setup::new();
        std::fs::write(
            s.repo.path().join("broken.yml"),
            CLOUD_YML.replace("environment: prod", "environment: prd"),
        )
        .unwrap();
        for command in ["validate", "plan", "apply"] {
            let out = s.action(command, "", "broken.yml");
            assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(
                    "::error file=broken.yml,line=5,col=18,title=spec%3A%3Aunknown_environment::"
                ),
                "{command}: {stdout}"
            );
            assert!(!s.outputs().contains_key("has-changes"));
        }
    }

    #[test]
    fn locate_builds_a_local_action_from_its_checkout() {
        let tmp = tempfile::tempdir().unwrap();
        let output = tmp.path().join("output.txt");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("bash")
            .arg(root.join(".github/actions/locate.sh"))
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_ACTION_PATH", root)
            .env("ACTION_REPOSITORY", "")
            .env("ACTION_REF", "")
            .env("INPUT_VERSION", "")
            .env("TOOL_CACHE", tmp.path())
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let written = std::fs::read_to_string(&output).unwrap();
        assert!(written.contains("source=build\n"), "{written}");
        assert!(
            written.contains(&format!("repository-url={}\n", root.display())),
            "{written}"
        );
        assert!(written.contains("install-root="), "{written}");
    }
}
