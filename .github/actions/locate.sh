#!/usr/bin/env bash
# Decides how the action gets its meltano-cloud binary: a release asset (checked against
# its .sha256) when the requested version or the action's ref is a release tag, else a
# cargo build of the action's own commit. Writes the decision to $GITHUB_OUTPUT.
set -euo pipefail

repo="${ACTION_REPOSITORY:-}"
ref="${INPUT_VERSION:-${ACTION_REF:-}}"

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

# Build from source, pinned to one commit so the cache key is exact.
if [ -n "$repo" ]; then
  url="https://github.com/${repo}"
  rev=$(git ls-remote "$url" "$ref" "refs/tags/$ref" "refs/heads/$ref" 2>/dev/null | head -n 1 | cut -f 1 || true)
  if [ -z "$rev" ] && [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then
    rev="$ref"
  fi
  if [ -z "$rev" ]; then
    echo "::error title=meltano-cloud::cannot resolve ${ref:-(empty ref)} in ${url}; set the action's \`version\` input to a release tag or a commit"
    exit 1
  fi
else
  # A local action (`uses: ./`): build the checked-out sources.
  url="$GITHUB_ACTION_PATH"
  rev=$(git -C "$GITHUB_ACTION_PATH" rev-parse HEAD 2>/dev/null || echo local)
fi
out source build
out repository-url "$url"
out rev "$rev"
out install-root "${TOOL_CACHE}/meltano-cloud/build-${rev}"
