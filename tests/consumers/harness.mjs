// The consumer tests' harness: a real sync-server (debug build, or
// $ZESTOR_SYNC_SERVER) on a temporary SQLite file with the test tokens,
// serving the built apps from its static folder, and headless Chromium
// (playwright-core) opening them. The server process, the browser's setup
// and the console-error checks are shared with the other browser tests, in
// tests/harness/browser.mjs.
//
// The package is the one run.mjs packed and installed into node_modules, so
// the apps resolve `zestor` the way an app that ran `npm install zestor`
// does: through its package.json `exports`.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { BrowserTestCase, SyncServerProcess, browserSuite, chromiumMissing, eventually, tail, within } from '../harness/browser.mjs';

export { REQUIRE_ALL, eventually } from '../harness/browser.mjs';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const APPS = path.join(HERE, 'apps');
export const BIN = path.join(HERE, 'node_modules/.bin');
export const PACKAGE = path.join(HERE, 'node_modules/zestor');
export const NAMESPACE = 'c';
export const TOKEN = 'consumer-token';

/** The server: the test token, and `dir/static` (where the tests build the apps) as its static folder. */
class ConsumerServer extends SyncServerProcess {
  constructor(dir) {
    const tokens = path.join(dir, 'tokens.txt');
    fs.writeFileSync(tokens, `${TOKEN} ${NAMESPACE} read_write\n`);
    const staticDir = path.join(dir, 'static');
    fs.mkdirSync(staticDir);
    super(dir, { args: ['--tokens', tokens, '--static-dir', staticDir], profile: 'debug' });
    this.static = staticDir;
  }

  /** A request to the server's HTTP API (docs/http.md) with the test token; the parsed JSON body. */
  async api(method, route, body) {
    const res = await fetch(`${this.url}/v1/ns/${NAMESPACE}/${route}`, {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body ? { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok && res.status !== 404) throw new Error(`${method} ${route}: HTTP ${res.status} ${text}`);
    return res.status === 404 ? null : JSON.parse(text);
  }
}

/** Sets up a test file: the server and Chromium, started before its tests and stopped after them. */
export function suite() {
  const s = browserSuite({
    playwright: () => import('playwright-core'),
    missing: chromiumMissing(),
    tmpPrefix: 'zestor-consumers-',
    newServer: (dir) => new ConsumerServer(dir),
    newTestCase: (s, _t, title) => new TestCase(s, title),
    timeout: 180_000,
  });
  /** The query string the apps read: where to sync. */
  s.query = () => new URLSearchParams({ sync: s.server.wsUrl, ns: NAMESPACE, token: TOKEN }).toString();
  return s;
}

export class TestCase extends BrowserTestCase {
  constructor(s, title) {
    super(s, title);
    this.unnamed = 0;
  }

  /** A new page (in its own context: its own IndexedDB) at `url`, watched for console errors. */
  async open(url, label = `page${++this.unnamed}`) {
    const context = await this.newContext();
    const page = this.watch(await context.newPage(), label);
    await page.goto(url);
    return page;
  }

  /** Opens an app's page and waits for its probe (apps/shared/probe.js); the probe's outcome. */
  async probe(url, label) {
    const page = await this.open(url, label);
    await page.waitForFunction(() => window.zestorProbe !== undefined, null, { timeout: 60_000 });
    const result = await page.evaluate(() => window.zestorProbe);
    const wasm = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .map((e) => e.name)
        .filter((name) => name.endsWith('.wasm')),
    );
    return { page, result, wasm };
  }
}

/** Runs a command in `cwd` to completion; throws with its output when it fails. */
export function run(cmd, args, { cwd = HERE, env = {} } = {}) {
  const r = spawnSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout + r.stderr;
}

/** Every file under `dir`, relative to it. */
export function files(dir) {
  return fs.readdirSync(dir, { recursive: true }).filter((f) => fs.statSync(path.join(dir, f)).isFile());
}

/**
 * Vite's dev server on `root` (`vite ROOT`, on a port the system picks, read
 * from what Vite prints), with its dependency cache emptied first so that
 * `zestor` is pre-bundled afresh, as on a first `npm run dev`. `stop()`
 * ends it.
 */
export async function viteDev(root, logFile) {
  fs.rmSync(path.join(HERE, 'node_modules/.vite'), { recursive: true, force: true });
  const log = fs.openSync(logFile, 'a');
  const proc = spawn(path.join(BIN, 'vite'), [root, '--port', '0', '--host', '127.0.0.1'], {
    cwd: HERE,
    stdio: ['ignore', log, log],
    env: { ...process.env, NO_COLOR: '1' },
  });
  fs.closeSync(log);
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  let url;
  await within(
    Promise.race([
      eventually(
        async () => {
          const printed = /Local:\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(fs.readFileSync(logFile, 'utf8'));
          if (!printed) throw new Error('no address printed yet');
          url = printed[1];
          const res = await fetch(url);
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
        },
        { timeout: 60_000, what: 'vite dev server' },
      ),
      exited.then((code) => {
        throw new Error(`vite exited (${code}):\n${tail(logFile)}`);
      }),
    ]),
    65_000,
    () => `vite did not start:\n${tail(logFile)}`,
  );
  return {
    url,
    async stop() {
      proc.kill('SIGTERM');
      await within(exited, 10_000, () => 'vite did not exit').catch(() => proc.kill('SIGKILL'));
    },
  };
}
