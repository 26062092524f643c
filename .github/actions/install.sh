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

# apply decrypts secrets with the sops binary: install it when it is missing.
if [ "${COMMAND:-}" = apply ] && ! command -v sops >/dev/null; then
  case "${RUNNER_OS:-Linux}/${RUNNER_ARCH:-X64}" in
    Linux/X64) platform=linux.amd64 ;;
    Linux/ARM64) platform=linux.arm64 ;;
    macOS/X64) platform=darwin.amd64 ;;
    macOS/ARM64) platform=darwin.arm64 ;;
    *) echo "::error title=meltano-cloud::no sops binary for ${RUNNER_OS}/${RUNNER_ARCH}; install sops before this action"; exit 1 ;;
  esac
  base="https://github.com/getsops/sops/releases/download/v${SOPS_VERSION}"
  name="sops-v${SOPS_VERSION}.${platform}"
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/$name" "$base/$name"
  curl -fsSL --retry 3 -o "$tmp/checksums.txt" "$base/sops-v${SOPS_VERSION}.checksums.txt"
  (cd "$tmp" && grep " ${name}\$" checksums.txt > sops.sha256 && if command -v sha256sum >/dev/null; then sha256sum -c sops.sha256; else shasum -a 256 -c sops.sha256; fi)
  install -m 0755 "$tmp/$name" "$bin/sops"
  rm -rf "$tmp"
  SOPS_DISABLE_VERSION_CHECK=1 "$bin/sops" --version
fi
