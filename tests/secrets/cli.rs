//! trycmd cases of `meltano-cloud secrets` in tests/cmd/secrets/, run with the real sops.

use crate::fixture::{clean_env, sops_bin};

#[test]
fn secrets_cli_cases() {
    let home = clean_env();
    let sops = sops_bin();
    trycmd::TestCases::new()
        .default_bin_name("meltano-cloud")
        .env("SOPS_BIN", sops.display().to_string())
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        // `--help` shows these variables' values: keep them fixed.
        .env("MELTANO_CLOUD_API_URL", "")
        .env("MELTANO_CLOUD_TOKEN", "")
        .env("MELTANO_CLOUD_ORG", "")
        .env("MELTANO_CLOUD_PROJECT", "")
        .env("MELTANO_CLOUD_CONFIG_PATH", "unused-settings.toml")
        .insert_var("[HOME]", home.display().to_string())
        .unwrap()
        .case("tests/cmd/secrets/*.md");
}
