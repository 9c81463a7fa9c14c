// Runs the consumer tests: the npm package as an app gets it from npm.
// Packs store-wasm/pkg/npm (or $ZESTOR_PKG_DIR) with `npm pack`, installs
// the tarball here next to the pinned bundlers, React and TypeScript, builds
// sync-server, then runs tests/*.test.mjs with Node's test runner, one file
// at a time: each builds apps (apps/) with a bundler's default setup and
// opens them in headless Chromium against its own sync-server.
//
//   node run.mjs [WORD...]   only the test files whose name contains a WORD
//
// Needs: Chromium (scripts/install-browser-tools.sh), the package built
// (scripts/build-wasm.sh), `npm ci` here; scripts/test-consumers.sh does
// all three. ZESTOR_REQUIRE_ALL=1 (CI) turns every skip into a failure.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Runner, cargoTargetDir } from '../harness/runner.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const pkgDir = path.resolve(process.env.ZESTOR_PKG_DIR || path.join(repo, 'store-wasm/pkg/npm'));
const runner = new Runner('consumers', here);
const fail = (message) => runner.fail(message);

await runner.requireBrowser(() => import('playwright-core'));
const files = runner.testFiles(process.argv.slice(2));
if (!fs.existsSync(path.join(pkgDir, 'package.json')) || !fs.existsSync(path.join(pkgDir, 'zestor_bg.wasm'))) {
  fail(`no built package in ${pkgDir}: run scripts/build-wasm.sh`);
}

// One temporary folder for the run: the tarball, the test files' servers,
// builds and browser profiles (their TMPDIR). ZESTOR_KEEP_TMP=1 keeps it.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zestor-consumers-run-'));
process.env.TMPDIR = tmp;
process.on('exit', () => {
  if (process.env.ZESTOR_KEEP_TMP) console.log(`consumers: kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5 });
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => setTimeout(() => process.exit(130), 1_000));
}

const npm = (args) => {
  const r = spawnSync('npm', args, { cwd: here, encoding: 'utf8' });
  if (r.status !== 0) fail(`npm ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};
const [packed] = JSON.parse(npm(['pack', pkgDir, '--pack-destination', tmp, '--json']));
const tarball = path.join(tmp, packed.filename);
console.log(`consumers: packed ${packed.id}: ${packed.entryCount} files, ${packed.size} bytes (${packed.unpackedSize} unpacked)`);
// As `npm install zestor` would, without recording it in package.json.
npm(['install', '--no-save', '--no-audit', '--no-fund', tarball]);
const installed = JSON.parse(fs.readFileSync(path.join(here, 'node_modules/zestor/package.json'), 'utf8'));
if (installed.version !== packed.version) fail(`installed zestor ${installed.version}, packed ${packed.version}`);

if (!process.env.ZESTOR_SYNC_SERVER) {
  console.log('consumers: cargo build -p sync-server');
  const build = spawnSync('cargo', ['build', '-p', 'sync-server', '--bin', 'sync-server'], { cwd: repo, stdio: 'inherit' });
  if (build.status !== 0) fail('cargo build -p sync-server failed');
  process.env.ZESTOR_SYNC_SERVER = path.join(cargoTargetDir(), 'debug', 'sync-server');
}
if (!fs.existsSync(process.env.ZESTOR_SYNC_SERVER)) fail(`no sync-server binary at ${process.env.ZESTOR_SYNC_SERVER}`);

const started = Date.now();
runner.run(files, {
  onEnd: () => console.log(`consumers: ${files.length} file(s) in ${((Date.now() - started) / 1000).toFixed(1)} s`),
});
