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
// ZESTOR_REQUIRE_ALL=1 (CI) turns every skip into a failure.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const requireAll = process.env.ZESTOR_REQUIRE_ALL === '1';
const chromium = process.env.ZESTOR_CHROMIUM || '/usr/bin/chromium';
const artifacts = path.join(here, 'artifacts');

function fail(message) {
  console.error(`e2e: ${message}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const build = !args.includes('--no-build');
const words = args.filter((a) => a !== '--no-build');

if (!fs.existsSync(chromium)) {
  const message = `Chromium not found at ${chromium}; run scripts/install-browser-tools.sh`;
  if (requireAll) fail(`${message} (ZESTOR_REQUIRE_ALL=1 forbids skipping)`);
  console.log(`e2e: SKIPPED: ${message}`);
  process.exit(0);
}
try {
  await import('playwright-core');
} catch {
  fail(`playwright-core is not installed: run \`npm ci\` in ${path.relative(process.cwd(), here) || '.'}`);
}

const files = fs
  .readdirSync(path.join(here, 'tests'))
  .filter((f) => f.endsWith('.test.mjs'))
  .filter((f) => words.length === 0 || words.some((w) => f.includes(w)))
  .sort()
  .map((f) => path.join(here, 'tests', f));
if (files.length === 0) fail(`no test file matches ${words.join(' ')}`);

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
  const metadata = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: repo, encoding: 'utf8' }),
  );
  process.env.ZESTOR_SYNC_SERVER = path.join(metadata.target_directory, 'release', 'sync-server');
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

let failed = 0;
let skipped = 0;
const started = Date.now();
const stream = run({ files, concurrency: 1 });
stream.on('test:fail', () => failed++);
stream.on('test:pass', (t) => {
  if (t.skip !== undefined || t.todo !== undefined) skipped++;
});
const out = stream.compose(new spec());
out.pipe(process.stdout);
out.on('end', () => {
  console.log(`e2e: ${files.length} file(s) in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${path.relative(process.cwd(), artifacts) || artifacts}`);
  if (failed > 0) process.exitCode = 1;
  if (skipped > 0 && requireAll) {
    console.error(`e2e: ${skipped} test(s) skipped; ZESTOR_REQUIRE_ALL=1 forbids skipping`);
    process.exitCode = 1;
  }
});
