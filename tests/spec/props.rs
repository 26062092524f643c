//! Property tests: no input makes the loader or validator panic.

use std::path::Path;

use proptest::prelude::*;

use meltano_cloud::spec::check::check_file;

const MELTANO: &str = "environments:\n- name: dev\n- name: prod\nschedules:\n- name: daily\n  interval: '@daily'\n  job: all\njobs:\n- name: all\n  tasks: [tap-a target-b]\n";

/// Fragments that make YAML interesting: structure, anchors, merges, odd scalars.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("version: 1\n".to_string()),
        Just("project: p\n".to_string()),
        Just("deployments:\n".to_string()),
        Just("  prod:\n".to_string()),
        Just("    environment: prod\n".to_string()),
        Just("    git_rev: main\n".to_string()),
        Just("    schedules: [daily, nope]\n".to_string()),
        Just("  base: &b\n".to_string()),
        Just("    <<: *b\n".to_string()),
        Just("secrets:\n".to_string()),
        Just("  A: {sops: s.yaml, key: a.b}\n".to_string()),
        Just("  GIT_SSH_PRIVATE_KEY: {sops: ../x}\n".to_string()),
        Just("- [ { ] }\n".to_string()),
        Just("\t\"é\\u\n".to_string()),
        Just("---\n".to_string()),
        Just("*missing\n".to_string()),
        Just("? [a]\n: b\n".to_string()),
        "[ -~]{0,20}\n",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn loader_never_panics(parts in prop::collection::vec(fragment(), 0..12)) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("meltano.yml"), MELTANO).unwrap();
        let path = tmp.path().join("cloud.yml");
        std::fs::write(&path, parts.concat()).unwrap();
        let (spec, diags) = check_file(&path);
        // Either it loaded, or it says why, with positions inside the file.
        prop_assert!(spec.is_some() || !diags.is_empty());
        for d in &diags {
            let flat = d.flat();
            prop_assert!(flat.line >= 1 && flat.column >= 1);
            let _ = meltano_cloud::spec::diagnostics::render(d, false);
        }
    }

    #[test]
    fn yaml_parser_never_panics(text in any::<String>()) {
        let _ = meltano_cloud::spec::yaml::parse(&text);
    }

    #[test]
    fn sops_reader_never_panics(text in any::<String>(), ext in prop_oneof![Just("yaml"), Just("json"), Just("env")]) {
        let _ = meltano_cloud::secrets::metadata::parse_sops(Path::new(&format!("x.{ext}")), &text);
    }
}
