#!/usr/bin/env bash
# Installs meltano-cloud as decided by locate.sh and puts it on PATH for later steps.
set -euo pipefail

bin="$INSTALL_ROOT/bin"
if [ -x "$bin/meltano-cloud" ]; then
  echo "meltano-cloud found in the cache: $bin"
elif [ "$SOURCE" = release ]; then
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/$ASSET_NAME" "$ASSET_URL"
  curl -fsSL --retry 3 -o "$tmp/$ASSET_NAME.sha256" "$ASSET_URL.sha256"
  # The checksum file is `<sha256>  <asset name>`; verify before unpacking anything.
  (cd "$tmp" && if command -v sha256sum >/dev/null; then sha256sum -c "$ASSET_NAME.sha256"; else shasum -a 256 -c "$ASSET_NAME.sha256"; fi)
  mkdir -p "$bin"
  tar -xzf "$tmp/$ASSET_NAME" -C "$bin" meltano-cloud
  rm -rf "$tmp"
else
  if ! command -v cargo >/dev/null; then
    echo "::error title=meltano-cloud::building from source needs a Rust toolchain; add dtolnay/rust-toolchain@stable before this action, or use a release version"
    exit 1
  fi
  if [ -d "$REPOSITORY_URL" ]; then
    cargo install --locked --root "$INSTALL_ROOT" --path "$REPOSITORY_URL" meltano-cloud
  else
    cargo install --locked --root "$INSTALL_ROOT" --git "$REPOSITORY_URL" --rev "$REV" meltano-cloud
  fi
fi
echo "$bin" >> "$GITHUB_PATH"
"$bin/meltano-cloud" --version
