//! cloud.yml loading and validation through the real binary: trycmd cases under
//! tests/cmd/spec (help, validate on valid files and one case per kind of error, init,
//! schema), the committed schema against the generated one, and a property test showing
//! the loader never panics.

#[path = "spec/props.rs"]
mod props;
mod support;

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

/// The server refuses to store a secret the executor would override on every run (the same
/// shared list cloud.yml validation uses), but still stores the git deploy key.
#[tokio::test]
async fn server_refuses_secrets_the_executor_sets() {
    let repo = support::TestRepo::new();
    let server = support::TestServer::start_sqlite();
    let (org, pid, token) = server.bootstrap(&repo);
    let client = reqwest::Client::new();
    let url = format!("{}/secrets/v1/{org}/{pid}/", server.url());
    let put = |name: &str| {
        client
            .put(&url)
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": name, "value": "v"}))
            .send()
    };
    for name in [
        "MELTANO_ENVIRONMENT",
        "MELTANO_SYS_DIR_ROOT",
        "PATH",
        "HOME",
    ] {
        let resp = put(name).await.unwrap();
        assert_eq!(resp.status(), 422, "{name}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("`{name}` is reserved")),
            "{detail}"
        );
    }
    for name in ["GIT_SSH_PRIVATE_KEY", "TAP_PASSWORD"] {
        assert_eq!(put(name).await.unwrap().status(), 204, "{name}");
    }
}

/// `init` in a fresh `git init` repository on `master` in a folder named `shop-data`: the
/// project is named after the folder, deployments track the current branch, and
/// `.meltano/` (local control-plane database and key) is appended to .gitignore once.
#[test]
fn init_uses_folder_and_branch_and_ignores_local_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop-data");
    std::fs::create_dir(&dir).unwrap();
    let git = std::process::Command::new("git")
        .args(["init", "-q", "-b", "master"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(git.success());
    std::fs::copy(
        "tests/cmd/spec/init.in/meltano.yml",
        dir.join("meltano.yml"),
    )
    .unwrap();
    std::fs::write(dir.join(".gitignore"), "output/").unwrap();
    let init = |extra: &[&str]| {
        std::process::Command::new(support::BIN)
            .arg("init")
            .args(extra)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let out = init(&[]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Added `.meltano/` to .gitignore"),
        "{stdout}"
    );
    let yml = std::fs::read_to_string(dir.join("cloud.yml")).unwrap();
    assert!(yml.contains("\nproject: shop-data\n"), "{yml}");
    assert!(yml.contains("git_rev: master "), "{yml}");
    assert!(!yml.contains("git_rev: main"), "{yml}");
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "output/\n.meltano/\n"
    );
    // Again: nothing added twice; an explicit --git-rev wins.
    let out = init(&["--force", "--git-rev", "release"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Added"));
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "output/\n.meltano/\n"
    );
    let yml = std::fs::read_to_string(dir.join("cloud.yml")).unwrap();
    assert!(yml.contains("git_rev: release "), "{yml}");
}

/// The quick start copies examples/jaffle-shop unchanged to a folder as deep below the
/// checkout as the example, so the copy's relative schema modeline still resolves.
#[test]
fn quickstart_copy_keeps_a_working_schema_modeline() {
    let script = std::fs::read_to_string("examples/quickstart.sh").unwrap();
    let work = script
        .lines()
        .find_map(|l| l.strip_prefix("work=\"$root/"))
        .and_then(|l| l.strip_suffix('"'))
        .expect("quickstart.sh sets work=\"$root/...\"");
    let modeline = std::fs::read_to_string("examples/jaffle-shop/cloud.yml").unwrap();
    let schema = modeline
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# yaml-language-server: $schema="))
        .unwrap();
    let mut resolved = std::path::PathBuf::from(work);
    for part in std::path::Path::new(schema).components() {
        match part {
            std::path::Component::ParentDir => {
                assert!(resolved.pop(), "{schema} leaves the checkout")
            }
            other => resolved.push(other),
        }
    }
    assert!(
        resolved.is_file(),
        "{work}/{schema} resolves to missing {}",
        resolved.display()
    );
    assert!(
        !script.contains("sed "),
        "quickstart.sh must copy the example unchanged"
    );
}
