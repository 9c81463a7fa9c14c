// The package installed from its tarball into apps built the way each tool
// builds them by default, each app run in headless Chromium against a real
// sync-server: it opens a synced store, receives an entry the test wrote
// through the server's HTTP API, and writes one the test then reads back
// there. Also checked: where the WebAssembly module came from (inlined in
// the bundle, or fetched as a file of its own) and that no bundle carries
// it twice.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { APPS, BIN, PACKAGE, files, run, suite, viteDev } from '../harness.mjs';

const s = suite();
const SEED = { title: 'written through the HTTP API' };

/** Builds into the server's static folder `name/`; its path. */
function out(name) {
  const dir = path.join(s.server.static, name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** The built files of `dir` by extension, and the size of the largest .js. */
function contents(dir) {
  const all = files(dir);
  const js = all.filter((f) => f.endsWith('.js'));
  return {
    wasm: all.filter((f) => f.endsWith('.wasm')),
    js,
    largestJs: Math.max(...js.map((f) => fs.statSync(path.join(dir, f)).size)),
  };
}

/** The inlined module alone is larger than this; a bundle without it is far smaller. */
const INLINE_BYTES = 300_000;

/** Opens the app at `url` and checks both directions of sync, and how the module was loaded. */
async function probe(tc, url, app, { fetchedWasm }) {
  await s.server.api('PUT', 'task/seed', SEED);
  const { result, wasm } = await tc.probe(url, app);
  assert.equal(result.ok, true, `the ${app} app failed: ${result.error}`);
  assert.deepEqual(result.seed, SEED);
  assert.equal(result.status.connection, 'online');
  const stored = await s.server.api('GET', `task/${app}`);
  assert.deepEqual(stored.value, { title: `written by the ${app} app`, seed: SEED.title });
  assert.equal(stored.rev, result.ack.rev);
  assert.equal(wasm.length, fetchedWasm ? 1 : 0, `.wasm files fetched: ${JSON.stringify(wasm)}`);
}

s.test('Vite dev server (dependency pre-bundling on): the inlined module', async (tc) => {
  const vite = await viteDev(path.join(APPS, 'vite'), path.join(s.dir, 'vite-dev.log'));
  try {
    await probe(tc, `${vite.url}/?${s.query()}&app=vite-dev`, 'vite-dev', { fetchedWasm: false });
  } finally {
    await vite.stop();
  }
});

s.test('Vite build: the inlined module, no .wasm file emitted', async (tc) => {
  const dir = out('vite');
  run(path.join(BIN, 'vite'), ['build', path.join(APPS, 'vite'), '--outDir', dir, '--base', '/vite/']);
  const built = contents(dir);
  assert.deepEqual(built.wasm, []);
  assert.ok(built.largestJs > INLINE_BYTES, `largest chunk ${built.largestJs} bytes`);
  await probe(tc, `${s.server.url}/vite/index.html?${s.query()}`, 'vite', { fetchedWasm: false });
});

s.test('webpack 5 (no config file): zestor_bg.wasm emitted as an asset and fetched', async (tc) => {
  const dir = out('webpack');
  run(path.join(BIN, 'webpack'), ['--mode', 'production', '--output-path', dir], { cwd: path.join(APPS, 'webpack') });
  fs.copyFileSync(path.join(APPS, 'webpack/index.html'), path.join(dir, 'index.html'));
  const built = contents(dir);
  assert.equal(built.wasm.length, 1, `wasm files: ${built.wasm}`);
  assert.ok(built.largestJs < INLINE_BYTES, `the bundle (${built.largestJs} bytes) carries the inlined module too`);
  await probe(tc, `${s.server.url}/webpack/index.html?${s.query()}`, 'webpack', { fetchedWasm: true });
});

s.test('esbuild --bundle: the inlined module', async (tc) => {
  const dir = out('esbuild');
  run(path.join(BIN, 'esbuild'), [path.join(APPS, 'esbuild/main.js'), '--bundle', '--format=esm', `--outdir=${dir}`]);
  fs.copyFileSync(path.join(APPS, 'esbuild/index.html'), path.join(dir, 'index.html'));
  assert.deepEqual(contents(dir).wasm, []);
  await probe(tc, `${s.server.url}/esbuild/index.html?${s.query()}`, 'esbuild', { fetchedWasm: false });
});

s.test('Rollup with node-resolve: the inlined module', async (tc) => {
  const dir = out('rollup');
  run(path.join(BIN, 'rollup'), ['-c'], { cwd: path.join(APPS, 'rollup'), env: { OUT_DIR: dir } });
  fs.copyFileSync(path.join(APPS, 'rollup/index.html'), path.join(dir, 'index.html'));
  assert.deepEqual(contents(dir).wasm, []);
  await probe(tc, `${s.server.url}/rollup/index.html?${s.query()}`, 'rollup', { fetchedWasm: false });
});

/** The installed package at /zestor/, the plain pages and the probe at /plain/. */
function servePlain() {
  fs.cpSync(PACKAGE, out('zestor'), { recursive: true });
  const dir = out('plain');
  fs.cpSync(path.join(APPS, 'plain'), dir, { recursive: true });
  fs.copyFileSync(path.join(APPS, 'shared/probe.js'), path.join(dir, 'probe.js'));
}

s.test('a plain <script type="module"> with an import map: the inlined module', async (tc) => {
  servePlain();
  await probe(tc, `${s.server.url}/plain/index.html?${s.query()}`, 'plain', { fetchedWasm: false });
});

s.test('a plain <script type="module"> importing zestor/url: zestor_bg.wasm fetched', async (tc) => {
  servePlain();
  await probe(tc, `${s.server.url}/plain/url.html?${s.query()}`, 'plain-url', { fetchedWasm: true });
});

s.test('zestor/url with init(url): the module is fetched from that URL only', async (tc) => {
  servePlain();
  fs.mkdirSync(path.join(s.server.static, 'elsewhere'), { recursive: true });
  fs.renameSync(path.join(s.server.static, 'zestor/zestor_bg.wasm'), path.join(s.server.static, 'elsewhere/module.wasm'));
  await s.server.api('PUT', 'task/seed', SEED);
  const { result, wasm } = await tc.probe(`${s.server.url}/plain/init-url.html?${s.query()}`, 'plain-init-url');
  assert.equal(result.ok, true, result.error);
  assert.deepEqual(
    wasm.map((u) => new URL(u).pathname),
    ['/elsewhere/module.wasm'],
  );
});

s.test('zestor/url without its zestor_bg.wasm: open() rejects with wasm_load, naming the URL', async (tc) => {
  servePlain();
  fs.rmSync(path.join(s.server.static, 'zestor/zestor_bg.wasm'));
  tc.allowConsoleErrors(/Failed to load resource: the server responded with a status of 404/);
  const { result } = await tc.probe(`${s.server.url}/plain/url.html?${s.query()}`, 'missing-wasm');
  assert.equal(result.ok, false);
  assert.match(result.error, /^ZestorError wasm_load: zestor: cannot load its WebAssembly module from http:\/\/127\.0\.0\.1:\d+\/zestor\/zestor_bg\.wasm: .*404/);
});
