#!/usr/bin/env bash
# Installs what building and testing Zestor needs, when it is missing.
# Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust from rustup first" >&2
  exit 1
fi

# rust-toolchain.toml names the components and the wasm target; rustup
# installs them on first use, but an explicit call fails early and clearly.
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add --toolchain "$toolchain" wasm32-unknown-unknown
  fi
  for component in rustfmt clippy; do
    if ! rustup component list --installed --toolchain "$toolchain" 2>/dev/null | grep -q "^$component"; then
      say "adding $component"
      rustup component add --toolchain "$toolchain" "$component"
    fi
  done
fi
say "toolchain ready: $(rustc --version)"
