// Runs the end-to-end tests of the web demo: builds what the demo serves
// the way scripts/demo.sh does, then runs tests/*.test.mjs with Node's test
// runner, one file at a time (each file starts its own sync-server, on a
// free port and a temporary SQLite file, and its own headless Chromium).
//
//   node run.mjs [--no-build] [WORD...]   only the test files whose name contains a WORD
//
// The build: `scripts/demo.sh --version` builds the npm package when its
// sources changed (scripts/install-browser-tools.sh, scripts/build-wasm.sh;
// ZESTOR_PKG_DIR=DIR serves an existing build instead), assembles
// web-demo/dist, and builds sync-server (release), then runs
// `sync-server --version`, which only prints the version: demo.sh has no
// build-only mode, and this is its whole build without the server. The
// tests run that sync-server binary (found with `cargo metadata`, so
// CARGO_TARGET_DIR is honoured), or $ZESTOR_SYNC_SERVER.
//
// Screenshots, each test's browser console and each file's server log go
// to tests/e2e/artifacts/ (emptied first when every file runs).
// ZESTOR_REQUIRE_ALL=1 (CI) turns every skip into a failure. The checks and
// the test runner are shared with store-wasm/js-tests (tests/harness/runner.mjs).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Runner, cargoTargetDir } from '../harness/runner.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const artifacts = path.join(here, 'artifacts');
const runner = new Runner('e2e', here);
const fail = (message) => runner.fail(message);

const args = process.argv.slice(2);
const build = !args.includes('--no-build');
const words = args.filter((a) => a !== '--no-build');

await runner.requireBrowser(() => import('playwright-core'));
const files = runner.testFiles(words);

if (build) {
  console.log('e2e: scripts/demo.sh --version (builds the package if needed, assembles web-demo/dist, builds sync-server)');
  const demo = spawnSync(path.join(repo, 'scripts/demo.sh'), ['--version'], { cwd: repo, stdio: 'inherit' });
  if (demo.status !== 0) fail(`scripts/demo.sh --version failed (${demo.status ?? demo.signal})`);
}
if (!fs.existsSync(path.join(repo, 'web-demo/dist/index.html')) || !fs.existsSync(path.join(repo, 'web-demo/dist/pkg/zestor_bg.wasm'))) {
  fail('web-demo/dist is not assembled: run scripts/demo.sh (or this runner without --no-build)');
}

if (!process.env.ZESTOR_SYNC_SERVER) {
  if (build) {
    // A no-op after demo.sh; says so if that ever changes.
    const cargo = spawnSync('cargo', ['build', '--release', '-p', 'sync-server', '--bin', 'sync-server'], { cwd: repo, stdio: 'inherit' });
    if (cargo.status !== 0) fail('cargo build --release -p sync-server failed');
  }
  // Where cargo put it: honours CARGO_TARGET_DIR and .cargo/config.
  process.env.ZESTOR_SYNC_SERVER = path.join(cargoTargetDir(), 'release', 'sync-server');
}
if (!fs.existsSync(process.env.ZESTOR_SYNC_SERVER)) fail(`no sync-server binary at ${process.env.ZESTOR_SYNC_SERVER}`);

if (words.length === 0) fs.rmSync(artifacts, { recursive: true, force: true });
fs.mkdirSync(artifacts, { recursive: true });

// One temporary folder for the run, the test files' TMPDIR: their servers'
// databases and Chromium's profiles go there, and it goes at the end, also
// when the run is interrupted. ZESTOR_KEEP_TMP=1 keeps it.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zestor-e2e-run-'));
process.env.TMPDIR = tmp;
process.on('exit', () => {
  if (process.env.ZESTOR_KEEP_TMP) console.log(`e2e: kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5 });
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  // The test files stop their servers and browsers on the same signal; give them a moment.
  process.once(signal, () => setTimeout(() => process.exit(130), 1_000));
}

const started = Date.now();
runner.run(files, {
  onEnd: () =>
    console.log(`e2e: ${files.length} file(s) in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${path.relative(process.cwd(), artifacts) || artifacts}`),
});
