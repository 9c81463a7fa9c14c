// Runs the browser tests of the npm package: builds the sync-server binary,
// checks the browser and the built package are there, then runs
// tests/*.test.mjs with Node's test runner, one file at a time (each file
// starts its own server and browser).
//
//   node run.mjs [WORD...]   only the test files whose name contains a WORD
//
// Needs: Chromium (scripts/install-browser-tools.sh), the package built into
// store-wasm/pkg/web (scripts/build-wasm.sh), `npm ci` here.
// ZESTOR_REQUIRE_ALL=1 (CI) turns every skip into a failure.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const requireAll = process.env.ZESTOR_REQUIRE_ALL === '1';
const chromium = process.env.ZESTOR_CHROMIUM || '/usr/bin/chromium';
const pkgDir = process.env.ZESTOR_PKG_DIR || path.join(repo, 'store-wasm/pkg/web');

function fail(message) {
  console.error(`js-tests: ${message}`);
  process.exit(1);
}

if (!fs.existsSync(chromium)) {
  const message = `Chromium not found at ${chromium}; run scripts/install-browser-tools.sh`;
  if (requireAll) fail(`${message} (ZESTOR_REQUIRE_ALL=1 forbids skipping)`);
  console.log(`js-tests: SKIPPED: ${message}`);
  process.exit(0);
}
try {
  await import('playwright-core');
} catch {
  fail(`playwright-core is not installed: run \`npm ci\` in ${path.relative(process.cwd(), here) || '.'}`);
}
if (!fs.existsSync(path.join(pkgDir, 'zestor.js')) || !fs.existsSync(path.join(pkgDir, 'zestor_bg.wasm'))) {
  fail(`no built package in ${pkgDir}: run scripts/build-wasm.sh`);
}

console.log('js-tests: cargo build -p sync-server');
const build = spawnSync('cargo', ['build', '-p', 'sync-server', '--bin', 'sync-server'], { cwd: repo, stdio: 'inherit' });
if (build.status !== 0) fail('cargo build -p sync-server failed');
// Where cargo put it: honours CARGO_TARGET_DIR and .cargo/config.
const metadata = JSON.parse(
  execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: repo, encoding: 'utf8' }),
);
const server = path.join(metadata.target_directory, 'debug', 'sync-server');
if (!fs.existsSync(server)) fail(`cargo built no ${server}`);
process.env.ZESTOR_SYNC_SERVER = server;
process.env.ZESTOR_PKG_DIR = pkgDir;

const words = process.argv.slice(2);
const files = fs
  .readdirSync(path.join(here, 'tests'))
  .filter((f) => f.endsWith('.test.mjs'))
  .filter((f) => words.length === 0 || words.some((w) => f.includes(w)))
  .sort()
  .map((f) => path.join(here, 'tests', f));
if (files.length === 0) fail(`no test file matches ${words.join(' ')}`);

let failed = 0;
let skipped = 0;
const stream = run({ files, concurrency: 1 });
stream.on('test:fail', () => failed++);
stream.on('test:pass', (t) => {
  if (t.skip !== undefined || t.todo !== undefined) skipped++;
});
const out = stream.compose(new spec());
out.pipe(process.stdout);
out.on('end', () => {
  if (failed > 0) process.exitCode = 1;
  if (skipped > 0 && requireAll) {
    console.error(`js-tests: ${skipped} test(s) skipped; ZESTOR_REQUIRE_ALL=1 forbids skipping`);
    process.exitCode = 1;
  }
});
