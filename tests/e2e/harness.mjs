// The end-to-end harness of the web demo: a real sync-server serving
// web-demo/dist with the demo's tokens and schemas on a temporary SQLite
// file, and headless Chromium (playwright-core) opening the board as a user
// does. The server process, the browser's setup and the console-error
// checks are shared with the npm package's tests, in
// tests/harness/browser.mjs; this file holds what the demo's tests add.
//
// A test file calls `suite(name)` once: a fresh server (own port, own
// database) and browser for its tests, both stopped after them.
// `s.test(title, fn)` runs `fn(tc)`; `tc` opens boards in browser contexts
// (each its own IndexedDB, so its own store and connection), fails the test
// on any console error or uncaught exception in them, and saves screenshots
// into tests/e2e/artifacts/.
//
// The only console errors allowed are Chromium's own "WebSocket connection
// to '…/sync' failed" lines, and only from a page whose context the test
// took offline or while the test stopped the server, until the page is
// online again.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { BrowserTestCase, REPO, SyncServerProcess, browserSuite, chromiumMissing } from '../harness/browser.mjs';

export { CHROMIUM, CHROMIUM_ARGS, REPO, REQUIRE_ALL, eventually, sleep } from '../harness/browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.join(here, 'artifacts');

export const DIST = path.join(REPO, 'web-demo/dist');
export const TOKENS = path.join(REPO, 'sync-server/dev-tokens.txt');
export const SCHEMAS = path.join(REPO, 'web-demo/schemas');
export const NAMESPACE = 'demo';
export const TOKEN = 'dev-token';
export const READ_TOKEN = 'dev-reader';

const TEST_TIMEOUT_MS = 180_000;
const VIEWPORT = { width: 1280, height: 860 };
/** What Chromium prints when a WebSocket cannot connect or drops. */
const WS_FAILED = /^WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/sync' failed/;

/**
 * sync-server as the demo runs it (dev tokens, the demo's schemas, serving
 * web-demo/dist; cargo's release build without $ZESTOR_SYNC_SERVER) on a
 * SQLite file in `dir`. It keeps its port and its database across `kill()`
 * and `start()`, so the pages reconnect to the same address and find the
 * same data.
 */
export class DemoServer extends SyncServerProcess {
  constructor(dir) {
    super(dir, {
      args: ['--tokens', TOKENS, '--schemas', SCHEMAS, '--static-dir', DIST],
      db: 'demo.sqlite',
      profile: 'release',
    });
  }
}

/** Whether the browser can run here; a missing one is a skip, or a failure under ZESTOR_REQUIRE_ALL=1. */
export function browserMissing() {
  const missing = chromiumMissing();
  if (missing) return missing;
  if (!fs.existsSync(path.join(DIST, 'index.html'))) return `no assembled demo in ${DIST} (scripts/demo.sh builds it)`;
  return null;
}

/** A file-name-safe form of `text`. */
export function slug(text, max = 60) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, max)
    .replace(/^-+|-+$/g, '');
}

/**
 * Sets up a test file: a fresh server and a browser for its tests, both
 * stopped after them. `name` prefixes the file's screenshots. The server is
 * up at the start of every test, even after a failed one.
 */
export function suite(name) {
  const s = browserSuite({
    playwright: () => import('playwright-core'),
    missing: browserMissing(),
    // run.mjs points TMPDIR at a folder of its own and removes it (this
    // folder, Chromium's profiles) at the end, also when interrupted.
    tmpPrefix: 'zestor-e2e-',
    newServer: (dir) => new DemoServer(dir),
    newTestCase: (s, _t, title) => new TestCase(s, title),
    timeout: TEST_TIMEOUT_MS,
    setUp: () => fs.mkdirSync(ARTIFACTS, { recursive: true }),
    tearDown: (s) => {
      if (s.server) fs.copyFileSync(s.server.logFile, path.join(ARTIFACTS, `${s.name}-server.log`));
    },
  });
  s.name = name;
  return s;
}

/**
 * One test's browser state: its contexts and pages, everything their
 * consoles printed, and the errors that fail it (see `BrowserTestCase`),
 * with the board's own steps: opening it, going offline, killing the
 * server, screenshots.
 */
export class TestCase extends BrowserTestCase {
  constructor(s, title) {
    super(s, title);
    this.settleMs = 100;
    /** Contexts the test took offline; `'*'` while the server is down. */
    this.down = new Set();
  }

  /** A fresh browser context: its own empty IndexedDB, so its own store and connection. */
  async newContext(label) {
    const context = await super.newContext({ viewport: VIEWPORT, colorScheme: 'light' });
    context.label = label;
    return context;
  }

  /**
   * Opens the board in `context` (`query` e.g. `?token=dev-reader`) and
   * waits until the store is open; `label` names the page in messages.
   */
  async openBoard(context, { label = context.label, query = '' } = {}) {
    const page = this.watch(await context.newPage(), label, (m) =>
      WS_FAILED.test(m.text()) && (this.down.has('*') || this.down.has(context)) ? 'offline' : null,
    );
    await page.goto(`${this.server.url}/${query}`);
    await this.ready(page);
    return page;
  }

  /** Waits for the board's `html[data-ready]`; throws with the boot message if the store did not open. */
  async ready(page) {
    await page.waitForFunction(() => document.documentElement.dataset.ready, null, { timeout: 30_000 });
    const ready = await page.evaluate(() => document.documentElement.dataset.ready);
    if (ready !== 'true') {
      const boot = await page.locator('[data-testid="boot"]').textContent();
      throw new Error(`[${page.label}] the board did not open (data-ready=${ready}): ${boot}`);
    }
  }

  /** Reloads `page` (its context, its IndexedDB and its service worker stay) and waits for the board. */
  async reload(page) {
    await page.reload();
    await this.ready(page);
  }

  /** Takes `context` off the network (`context.setOffline(true)`): its WebSocket failures are expected. */
  async goOffline(context) {
    this.down.add(context);
    await context.setOffline(true);
  }

  /** Puts `context` back online and waits until each of its `pages` is online and synced again. */
  async goOnline(context, pages, waitOnline) {
    await context.setOffline(false);
    for (const page of pages) await waitOnline(page);
    this.down.delete(context);
  }

  /** Kills the server (SIGKILL): every page's WebSocket failures are expected until `restartServer`. */
  async killServer() {
    this.down.add('*');
    await this.server.kill();
  }

  /** Starts the server again on the same port and database; waits until `pages` are online and synced. */
  async restartServer(pages, waitOnline) {
    await this.server.start();
    for (const page of pages) await waitOnline(page, 60_000);
    this.down.delete('*');
  }

  /** Saves a screenshot of `page` (the whole page) as artifacts/FILE-NN-NAME.png; returns its path. */
  async shot(page, name) {
    this.s.shots = (this.s.shots ?? 0) + 1;
    const file = path.join(ARTIFACTS, `${this.s.name}-${String(this.s.shots).padStart(2, '0')}-${slug(name)}.png`);
    await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
    return file;
  }

  /**
   * What the server holds in namespace `demo` now, read over the raw sync
   * protocol from a page of its own (not through the package): `{ rev,
   * entries }`, entries keyed `kind/key` with `value`, `version` and `rev`.
   */
  async serverSnapshot(token = TOKEN) {
    const probe = await this.#probe();
    return probe.evaluate(rawSession, { url: this.server.wsUrl, namespace: NAMESPACE, token, push: null });
  }

  /**
   * Pushes one op over the raw protocol (with `token`) and returns the
   * server's `ack` or `reject` frame.
   */
  async rawPush(op, token = TOKEN) {
    const probe = await this.#probe();
    return probe.evaluate(rawSession, { url: this.server.wsUrl, namespace: NAMESPACE, token, push: op });
  }

  /** A page of the server's origin in a context of its own, with no board (and no service worker) in it. */
  async #probe() {
    if (!this.probe) {
      const context = await this.newContext('probe');
      this.probe = await context.newPage();
      this.probe.label = 'probe';
      this.probe.on('pageerror', (e) => this.errors.push(`[probe] uncaught: ${e.message}`));
      await this.probe.goto(`${this.server.url}/healthz`);
    }
    return this.probe;
  }

  /** Screenshots of every open page when the test failed; the test's browser console, always. */
  async beforeClose(failure, errors) {
    if (failure || errors.length) {
      for (const page of this.pages) {
        if (page.isClosed()) continue;
        await page
          .screenshot({ path: path.join(ARTIFACTS, `FAILED-${this.s.name}-${slug(this.title)}-${slug(page.label)}.png`), fullPage: true })
          .catch(() => {});
      }
    }
    fs.writeFileSync(path.join(ARTIFACTS, `${this.s.name}-${slug(this.title, 40)}-console.log`), `${this.messages.join('\n')}\n`);
  }
}

/**
 * Runs in the probe page: opens a raw protocol session (`hello`), reads the
 * initial snapshot, and, with `push`, pushes that one op and returns the
 * server's answer to it instead.
 */
async function rawSession({ url, namespace, token, push }) {
  const frames = [];
  let wake = () => {};
  let closed = null;
  const ws = new WebSocket(url);
  ws.onmessage = (e) => {
    frames.push(JSON.parse(e.data));
    wake();
  };
  ws.onclose = (e) => {
    closed = e.code;
    wake();
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
  });
  const next = async (pred, timeout = 10_000) => {
    const deadline = performance.now() + timeout;
    for (;;) {
      const i = frames.findIndex(pred);
      if (i >= 0) return frames.splice(i, 1)[0];
      if (closed !== null) throw new Error(`the server closed the session (${closed})`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no such frame within ${timeout} ms; got ${JSON.stringify(frames)}`);
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, left);
      });
    }
  };
  try {
    ws.send(JSON.stringify({ type: 'hello', protocol: 1, namespace, token, client_id: `e2e-probe-${Math.random().toString(36).slice(2)}` }));
    const welcome = await next((f) => f.type === 'welcome' || f.type === 'error');
    if (welcome.type !== 'welcome') throw new Error(`refused: ${JSON.stringify(welcome)}`);
    const entries = {};
    let rev;
    for (;;) {
      const part = await next((f) => f.type === 'snapshot');
      for (const e of part.entries) entries[`${e.kind}/${e.key}`] = e;
      if (part.done) {
        rev = part.rev;
        break;
      }
    }
    if (!push) return { rev, rights: welcome.rights, entries };
    const op_id = `e2e-op-${Math.random().toString(36).slice(2)}`;
    ws.send(JSON.stringify({ type: 'push', ops: [{ action: 'set', ...push, op_id }] }));
    return await next((f) => (f.type === 'ack' || f.type === 'reject') && f.op_id === op_id);
  } finally {
    ws.close();
  }
}
