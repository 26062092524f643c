//! The decryption API against the real sops binary.

use std::path::Path;

use meltano_cloud::secrets::decrypt::{
    SecretRequest, SopsBin, SopsError, SopsOrigin, check_requests, decrypt_requests,
};

use crate::fixture::SopsFixture;

const PROD: &str = "tap_gitlab:\n  password: gl-Zq9-distinctive-1\nTARGET_SNOWFLAKE_PASSWORD: sf-Xw7-distinctive-2\nport: 5432\nempty: \"\"\nnested:\n  list: [a, b]\n";

fn bin(path: std::path::PathBuf) -> SopsBin {
    SopsBin {
        program: path,
        origin: SopsOrigin::Flag,
    }
}

fn req<'a>(name: &'a str, file: &'a str, key: &'a str) -> SecretRequest<'a> {
    SecretRequest {
        name,
        file: Path::new(file),
        key_path: key,
        recipients: &[],
    }
}

#[tokio::test]
async fn decrypts_yaml_json_and_dotenv_once_per_file() {
    let fx = SopsFixture::new();
    fx.encrypt("secrets/prod.sops.yaml", PROD);
    fx.encrypt(
        "secrets/extra.sops.json",
        r#"{"warehouse": {"token": "wh-Kp3-distinctive-3"}, "a.b": "dotted-key-4"}"#,
    );
    fx.encrypt("secrets/app.env", "API_KEY=env-Qr5-distinctive-5\n");
    let sops = bin(fx.wrapper(true));
    let requests = [
        req(
            "TAP_GITLAB_PASSWORD",
            "secrets/prod.sops.yaml",
            "tap_gitlab.password",
        ),
        req(
            "TARGET_SNOWFLAKE_PASSWORD",
            "secrets/prod.sops.yaml",
            "TARGET_SNOWFLAKE_PASSWORD",
        ),
        req("PORT", "secrets/prod.sops.yaml", "/port"),
        req(
            "WAREHOUSE_TOKEN",
            "secrets/extra.sops.json",
            "/warehouse/token",
        ),
        req("DOTTED", "secrets/extra.sops.json", "/a.b"),
        req("API_KEY", "secrets/app.env", "API_KEY"),
    ];
    let values = decrypt_requests(fx.dir.path(), &requests, &sops)
        .await
        .unwrap();
    let get = |name: &str| values.get(name).unwrap().expose().to_string();
    assert_eq!(get("TAP_GITLAB_PASSWORD"), "gl-Zq9-distinctive-1");
    assert_eq!(get("TARGET_SNOWFLAKE_PASSWORD"), "sf-Xw7-distinctive-2");
    assert_eq!(get("PORT"), "5432");
    assert_eq!(get("WAREHOUSE_TOKEN"), "wh-Kp3-distinctive-3");
    assert_eq!(get("DOTTED"), "dotted-key-4");
    assert_eq!(get("API_KEY"), "env-Qr5-distinctive-5");
    assert_eq!(values.len(), 6);
    assert_eq!(fx.sops_calls(), 3, "each file is decrypted exactly once");
    // Nothing decrypted was written next to the encrypted files.
    for entry in walk(fx.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("distinctive"),
            "{} holds a decrypted value",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn no_key_names_recipients_and_key_variables() {
    let fx = SopsFixture::new();
    fx.encrypt("prod.sops.yaml", PROD);
    let sops = bin(fx.wrapper(false));
    let recipients = vec![fx.public_key.clone()];
    let requests = [SecretRequest {
        name: "TAP_GITLAB_PASSWORD",
        file: Path::new("prod.sops.yaml"),
        key_path: "tap_gitlab.password",
        recipients: &recipients,
    }];
    let err = decrypt_requests(fx.dir.path(), &requests, &sops)
        .await
        .unwrap_err();
    let SopsError::NoKey {
        recipients, help, ..
    } = &err
    else {
        panic!("expected NoKey, got {err:?}");
    };
    assert_eq!(recipients, &fx.public_key);
    assert!(help.contains("SOPS_AGE_KEY_FILE"), "{help}");
    assert!(
        help.contains("SOPS_AGE_KEY (not set)") || help.contains("SOPS_AGE_KEY (set)"),
        "{help}"
    );
    assert!(
        !help.contains("AWS_"),
        "only age sources are relevant: {help}"
    );
    let rendered = render(&err);
    assert!(rendered.contains("secrets::no_key"), "{rendered}");
    assert!(!rendered.contains("distinctive"));
}

#[tokio::test]
async fn no_key_recipients_come_from_sops_when_metadata_has_none() {
    let fx = SopsFixture::new();
    fx.encrypt("prod.sops.yaml", PROD);
    let sops = bin(fx.wrapper(false));
    let err = decrypt_requests(fx.dir.path(), &[req("A", "prod.sops.yaml", "port")], &sops)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SopsError::NoKey { recipients, .. } if recipients == &fx.public_key),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_file() {
    let fx = SopsFixture::new();
    let sops = bin(fx.wrapper(true));
    let err = decrypt_requests(
        fx.dir.path(),
        &[req("A", "nope/prod.sops.yaml", "a")],
        &sops,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SopsError::Missing { .. }), "{err:?}");
    assert!(render(&err).contains("nope/prod.sops.yaml"));
    assert_eq!(fx.sops_calls(), 0);
}

#[tokio::test]
async fn mac_mismatch_when_a_value_is_removed_by_hand() {
    let fx = SopsFixture::new();
    let path = fx.encrypt("prod.sops.yaml", PROD);
    // Drop one encrypted list item without sops: the MAC no longer matches.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let item = lines
        .iter()
        .position(|l| l.trim_start().starts_with("- ENC["))
        .expect("an encrypted list item");
    lines.remove(item);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let sops = bin(fx.wrapper(true));
    let err = decrypt_requests(fx.dir.path(), &[req("A", "prod.sops.yaml", "port")], &sops)
        .await
        .unwrap_err();
    assert!(matches!(err, SopsError::MacMismatch { .. }), "{err:?}");
    assert!(render(&err).contains("tampered"));
}

#[tokio::test]
async fn damaged_ciphertext() {
    let fx = SopsFixture::new();
    let path = fx.encrypt("prod.sops.yaml", PROD);
    let text = std::fs::read_to_string(&path).unwrap();
    // Flip one character of the first value's ciphertext.
    let start = text.find("ENC[AES256_GCM,data:").unwrap() + "ENC[AES256_GCM,data:".len();
    let mut bytes = text.into_bytes();
    bytes[start] = if bytes[start] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, bytes).unwrap();
    let sops = bin(fx.wrapper(true));
    let err = decrypt_requests(fx.dir.path(), &[req("A", "prod.sops.yaml", "port")], &sops)
        .await
        .unwrap_err();
    assert!(matches!(err, SopsError::Damaged { .. }), "{err:?}");
}

#[tokio::test]
async fn sops_not_installed() {
    let fx = SopsFixture::new();
    fx.encrypt("prod.sops.yaml", PROD);
    let sops = bin(fx.path("no-such-sops"));
    let err = decrypt_requests(fx.dir.path(), &[req("A", "prod.sops.yaml", "port")], &sops)
        .await
        .unwrap_err();
    assert!(matches!(err, SopsError::NotInstalled { .. }), "{err:?}");
    let rendered = render(&err);
    assert!(rendered.contains("--sops-bin"), "{rendered}");
    assert!(rendered.contains("install sops"), "{rendered}");
}

#[tokio::test]
async fn plaintext_file_is_not_encrypted() {
    let fx = SopsFixture::new();
    std::fs::write(fx.path("plain.yaml"), "a: plain-Lm2-distinctive-6\n").unwrap();
    let sops = bin(fx.wrapper(true));
    let err = decrypt_requests(fx.dir.path(), &[req("A", "plain.yaml", "a")], &sops)
        .await
        .unwrap_err();
    assert!(matches!(err, SopsError::NotEncrypted { .. }), "{err:?}");
    assert!(!render(&err).contains("distinctive"));
}

#[tokio::test]
async fn value_level_errors_are_reported_per_secret() {
    let fx = SopsFixture::new();
    fx.encrypt("prod.sops.yaml", PROD);
    let sops = bin(fx.wrapper(true));
    let requests = [
        req("EMPTY", "prod.sops.yaml", "empty"),
        req("MISSING", "prod.sops.yaml", "tap_gitlab.token"),
        req("LIST", "prod.sops.yaml", "nested.list"),
        req("GOOD", "prod.sops.yaml", "tap_gitlab.password"),
        req("GONE", "gone.sops.yaml", "x"),
    ];
    let outcomes = check_requests(fx.dir.path(), &requests, &sops).await;
    let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["EMPTY", "MISSING", "LIST", "GOOD", "GONE"]);
    assert!(matches!(outcomes[0].result, Err(SopsError::Empty { .. })));
    assert!(matches!(
        outcomes[1].result,
        Err(SopsError::KeyNotFound { .. })
    ));
    assert!(matches!(
        outcomes[2].result,
        Err(SopsError::NotScalar { .. })
    ));
    assert_eq!(
        outcomes[3].result.as_ref().unwrap().expose(),
        "gl-Zq9-distinctive-1"
    );
    assert!(matches!(outcomes[4].result, Err(SopsError::Missing { .. })));
    assert_eq!(fx.sops_calls(), 1);

    // decrypt_requests reports every distinct failure together.
    let err = decrypt_requests(fx.dir.path(), &requests, &sops)
        .await
        .unwrap_err();
    let SopsError::Several { errors } = &err else {
        panic!("expected Several, got {err:?}");
    };
    assert_eq!(errors.len(), 4);
    let rendered = render(&err);
    assert!(!rendered.contains("distinctive"), "{rendered}");
}

#[tokio::test]
async fn a_sops_set_changes_only_that_value() {
    let fx = SopsFixture::new();
    fx.encrypt("prod.sops.yaml", PROD);
    fx.set(
        "prod.sops.yaml",
        r#"["tap_gitlab"]["password"]"#,
        r#""gl-Zq9-distinctive-changed""#,
    );
    let sops = bin(fx.wrapper(true));
    let values = decrypt_requests(
        fx.dir.path(),
        &[
            req("A", "prod.sops.yaml", "tap_gitlab.password"),
            req("B", "prod.sops.yaml", "TARGET_SNOWFLAKE_PASSWORD"),
        ],
        &sops,
    )
    .await
    .unwrap();
    assert_eq!(
        values.get("A").unwrap().expose(),
        "gl-Zq9-distinctive-changed"
    );
    assert_eq!(values.get("B").unwrap().expose(), "sf-Xw7-distinctive-2");
    assert!(!format!("{values:?}").contains("distinctive"));
}

fn render(err: &SopsError) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, err)
        .unwrap();
    out
}
