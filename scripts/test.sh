#!/usr/bin/env bash
# Runs every test of the project. This is the README's test command, and
# .ci/run calls it.
#
# Set ZESTOR_REQUIRE_ALL=1 (CI does) to turn any test that would skip for a
# missing service or browser into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/ensure-postgres.sh

echo "== store-core builds for wasm32-unknown-unknown and does no I/O"
scripts/check-core-no-io.sh

echo "== the native client builds without the server's dependencies"
scripts/check-client-deps.sh

echo "== cargo test (workspace, all features)"
cargo test --workspace --all-features

echo "== browser tools (Chromium, wasm-pack, wasm-bindgen, binaryen)"
scripts/install-browser-tools.sh

echo "== store-wasm in headless Chromium (wasm-bindgen-test)"
scripts/test-wasm.sh

echo "== the npm package in headless Chromium, synced through sync-server (store-wasm/js-tests)"
scripts/test-browser.sh

echo "== the web demo end to end in headless Chromium, served by sync-server (tests/e2e)"
# The package test-browser.sh just built.
ZESTOR_PKG_DIR=store-wasm/pkg/npm scripts/test-e2e.sh

echo "== the npm package's tarball in Vite, webpack, esbuild, Rollup, plain-module and React apps, and strict tsc (tests/consumers)"
ZESTOR_PKG_DIR=store-wasm/pkg/npm scripts/test-consumers.sh
