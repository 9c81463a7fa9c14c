// Runs the browser tests of the npm package: builds the sync-server binary,
// checks the browser and the built package are there, then runs
// tests/*.test.mjs with Node's test runner, one file at a time (each file
// starts its own server and browser).
//
//   node run.mjs [WORD...]   only the test files whose name contains a WORD
//
// Needs: Chromium (scripts/install-browser-tools.sh), the package built into
// store-wasm/pkg/npm (scripts/build-wasm.sh), `npm ci` here.
// ZESTOR_REQUIRE_ALL=1 (CI) turns every skip into a failure. The checks and
// the test runner are shared with tests/e2e (tests/harness/runner.mjs).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Runner, cargoTargetDir } from '../../tests/harness/runner.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const pkgDir = process.env.ZESTOR_PKG_DIR || path.join(repo, 'store-wasm/pkg/npm');
const runner = new Runner('js-tests', here);
const fail = (message) => runner.fail(message);

await runner.requireBrowser(() => import('playwright-core'));
if (!fs.existsSync(path.join(pkgDir, 'url.js')) || !fs.existsSync(path.join(pkgDir, 'zestor_bg.wasm'))) {
  fail(`no built package in ${pkgDir}: run scripts/build-wasm.sh`);
}

console.log('js-tests: cargo build -p sync-server');
const build = spawnSync('cargo', ['build', '-p', 'sync-server', '--bin', 'sync-server'], { cwd: repo, stdio: 'inherit' });
if (build.status !== 0) fail('cargo build -p sync-server failed');
// Where cargo put it: honours CARGO_TARGET_DIR and .cargo/config.
const server = path.join(cargoTargetDir(), 'debug', 'sync-server');
if (!fs.existsSync(server)) fail(`cargo built no ${server}`);
process.env.ZESTOR_SYNC_SERVER = server;
process.env.ZESTOR_PKG_DIR = pkgDir;

runner.run(runner.testFiles(process.argv.slice(2)));
