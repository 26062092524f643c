#!/usr/bin/env bash
# Decides how the action gets its meltano-cloud binary: a release asset (checked against
# its .sha256) when the requested version or the action's ref is a release tag, else a
# cargo build of the action's own commit. Writes the decision to $GITHUB_OUTPUT.
set -euo pipefail
# Never wait for credentials: an unknown repository must fail, not prompt.
export GIT_TERMINAL_PROMPT=0

repo="${ACTION_REPOSITORY:-}"
ref="${ACTION_REF:-}"
# Some runner versions leave github.action_repository and github.action_ref empty inside
# composite actions; a remote action is checked out at .../_actions/OWNER/REPO/REF.
if [ -z "$repo" ] && [[ "${GITHUB_ACTION_PATH:-}" =~ /_actions/([^/]+)/([^/]+)/([^/]+)/?$ ]]; then
  repo="${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
  ref="${BASH_REMATCH[3]}"
fi
ref="${INPUT_VERSION:-$ref}"

case "${RUNNER_OS:-Linux}/${RUNNER_ARCH:-X64}" in
  Linux/X64) target=x86_64-unknown-linux-gnu ;;
  Linux/ARM64) target=aarch64-unknown-linux-gnu ;;
  macOS/X64) target=x86_64-apple-darwin ;;
  macOS/ARM64) target=aarch64-apple-darwin ;;
  *) target="" ;;
esac

out() { printf '%s=%s\n' "$1" "$2" >> "$GITHUB_OUTPUT"; }

# Release assets exist only for tags such as v1.2.3, built for the targets above.
if [ -n "$repo" ] && [ -n "$target" ] && [[ "$ref" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then
  asset="meltano-cloud-${ref}-${target}.tar.gz"
  url="https://github.com/${repo}/releases/download/${ref}/${asset}"
  # A one-byte GET: release downloads redirect to signed URLs that only allow GET.
  if curl -fsSL --retry 3 -r 0-0 -o /dev/null "$url"; then
    out source release
    out asset-url "$url"
    out asset-name "$asset"
    out install-root "${TOOL_CACHE}/meltano-cloud/${ref}/${target}"
    out rev "$ref"
    exit 0
  fi
  echo "::notice title=meltano-cloud::no release asset ${asset} for ${ref}; building from source"
fi

# Build from source, pinned to one commit so the cache key is exact: `cargo install --git`
# at the commit the ref names, or, when it cannot be resolved (or for a local action,
# `uses: ./`), the action's own checked-out sources.
rev=""
if [ -n "$repo" ]; then
  url="https://github.com/${repo}"
  rev=$(git ls-remote "$url" "$ref" "refs/tags/$ref" "refs/heads/$ref" 2>/dev/null | head -n 1 | cut -f 1 || true)
  if [ -z "$rev" ] && [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then
    rev="$ref"
  fi
fi
if [ -z "$rev" ]; then
  if [ ! -f "${GITHUB_ACTION_PATH:-}/Cargo.toml" ]; then
    where="${repo:-the repository of the action}"
    echo "::error title=meltano-cloud::cannot resolve ${ref:-(empty ref)} in ${where}; set the action's \`version\` input to a release tag"
    exit 1
  fi
  url="$GITHUB_ACTION_PATH"
  # The cache key must change with the sources: the commit, else a hash of them.
  rev=$(git -C "$GITHUB_ACTION_PATH" rev-parse HEAD 2>/dev/null) \
    || rev="src-$(cd "$GITHUB_ACTION_PATH" && find Cargo.toml Cargo.lock src -type f -print0 | sort -z \
      | xargs -0 cat | { sha256sum 2>/dev/null || shasum -a 256; } | cut -c 1-16)"
fi
out source build
out repository-url "$url"
out rev "$rev"
out install-root "${TOOL_CACHE}/meltano-cloud/build-${rev}"
