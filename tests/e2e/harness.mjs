// The end-to-end harness of the web demo: a real sync-server serving
// web-demo/dist with the demo's tokens and schemas on a temporary SQLite
// file, and headless Chromium (playwright-core) opening the board as a user
// does.
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

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const ARTIFACTS = path.join(here, 'artifacts');

export const REQUIRE_ALL = process.env.ZESTOR_REQUIRE_ALL === '1';
export const CHROMIUM = process.env.ZESTOR_CHROMIUM || '/usr/bin/chromium';
// Root without a sandbox; no GPU; nothing that phones home (the network is closed).
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
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

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls `fn` until it returns without throwing (its assertions hold), and
 * returns what it returned; after `timeout` ms throws its last error, saying
 * what was awaited.
 */
export async function eventually(fn, { timeout = 20_000, interval = 100, what = null } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) {
        const prefix = `still failing after ${timeout} ms${what ? ` (${what})` : ''}: `;
        if (e instanceof Error) {
          e.message = prefix + e.message;
          throw e;
        }
        throw new Error(prefix + String(e));
      }
    }
    await sleep(interval);
  }
}

/** `promise`, or the error `message()` after `ms`. */
function within(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** The sync-server binary: $ZESTOR_SYNC_SERVER (run.mjs sets it), else cargo's release build. */
export function serverBinary() {
  if (process.env.ZESTOR_SYNC_SERVER) return process.env.ZESTOR_SYNC_SERVER;
  const metadata = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: REPO, encoding: 'utf8' }),
  );
  return path.join(metadata.target_directory, 'release', 'sync-server');
}

/**
 * sync-server as the demo runs it (dev tokens, the demo's schemas, serving
 * web-demo/dist) on a SQLite file in `dir`. It keeps its port and its
 * database across `kill()` and `start()`, so the pages reconnect to the same
 * address and find the same data.
 */
export class DemoServer {
  constructor(dir) {
    this.dir = dir;
    this.db = path.join(dir, 'demo.sqlite');
    this.logFile = path.join(dir, 'server.log');
    this.port = 0;
    this.proc = null;
    this.exited = null;
    this.starts = 0;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/sync`;
  }

  get running() {
    return this.proc !== null;
  }

  /** Starts the server (a free port the first time, the same port after) and waits for /healthz. */
  async start() {
    if (this.proc) throw new Error('the server is already running');
    const log = fs.openSync(this.logFile, 'a');
    fs.writeSync(log, `\n==== start ${++this.starts}\n`);
    const args = [
      '--db', `sqlite://${this.db}`,
      '--listen', `127.0.0.1:${this.port}`,
      '--tokens', TOKENS,
      '--schemas', SCHEMAS,
      '--static-dir', DIST,
    ];
    const proc = spawn(serverBinary(), args, {
      cwd: this.dir,
      stdio: ['ignore', 'pipe', log],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
    });
    fs.closeSync(log);
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    const listening = new Promise((resolve, reject) => {
      let out = '';
      proc.stdout.on('data', (chunk) => {
        out += chunk;
        fs.appendFileSync(this.logFile, chunk);
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      proc.once('error', reject);
      this.exited.then(({ code, signal }) =>
        reject(new Error(`sync-server exited (${code ?? signal}) before listening:\n${tail(this.logFile)}`)),
      );
    });
    this.port = await within(listening, 30_000, () => `sync-server did not start within 30 s:\n${tail(this.logFile)}`);
    for (let i = 0; ; i++) {
      try {
        const res = await fetch(`${this.url}/healthz`);
        if (res.ok && (await res.text()).trim() === 'ok') break;
      } catch {
        // not yet
      }
      if (i > 200) throw new Error(`sync-server /healthz did not answer:\n${tail(this.logFile)}`);
      await sleep(50);
    }
  }

  /** Kills the server outright (SIGKILL), as a crash would. */
  async kill() {
    await this.#end('SIGKILL');
  }

  /** Stops the server as an operator would (SIGTERM). */
  async stop() {
    await this.#end('SIGTERM');
  }

  async #end(signal) {
    const proc = this.proc;
    if (!proc) return;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    try {
      await within(this.exited, 20_000, () => 'sync-server did not exit');
    } catch {
      proc.kill('SIGKILL');
      await this.exited;
    }
    this.proc = null;
  }

  /** Kills the process synchronously (at process exit). */
  killNow() {
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }

  /** The server's /metrics counters, by name. */
  async metrics() {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const out = {};
    for (const line of text.split('\n')) {
      const m = /^(zestor_\w+) (\d+)$/.exec(line);
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  }

  log(lines = 40) {
    return tail(this.logFile, lines);
  }
}

/** Whether the browser can run here; a missing one is a skip, or a failure under ZESTOR_REQUIRE_ALL=1. */
export function browserMissing() {
  if (!fs.existsSync(CHROMIUM)) return `Chromium not found at ${CHROMIUM} (scripts/install-browser-tools.sh installs it)`;
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
 * stopped after them. `name` prefixes the file's screenshots.
 */
export function suite(name) {
  const s = { name, server: null, browser: null, dir: null };
  const missing = browserMissing();

  before(async () => {
    if (missing) return;
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    s.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zestor-e2e-'));
    s.server = new DemoServer(s.dir);
    // Interrupted (Ctrl-C): the server goes with the test process. run.mjs
    // removes the temporary folders (this one, Chromium's profiles).
    process.once('exit', () => s.server?.killNow());
    for (const signal of ['SIGINT', 'SIGTERM']) {
      process.once(signal, () => {
        s.server?.killNow();
        process.exit(130);
      });
    }
    await s.server.start();
    const { chromium } = await import('playwright-core');
    s.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await s.browser?.close().catch(() => {});
    await s.server?.stop();
    if (s.server) fs.copyFileSync(s.server.logFile, path.join(ARTIFACTS, `${s.name}-server.log`));
    if (s.dir && !process.env.ZESTOR_KEEP_TMP) fs.rmSync(s.dir, { recursive: true, force: true });
  });

  /** A test with a fresh `TestCase`; skipped (or failed, under ZESTOR_REQUIRE_ALL=1) without a browser or a demo. */
  s.test = (title, fn, { timeout = TEST_TIMEOUT_MS } = {}) =>
    test(title, { timeout }, async (t) => {
      if (missing) {
        if (REQUIRE_ALL) throw new Error(`${missing}; ZESTOR_REQUIRE_ALL=1 forbids skipping`);
        t.skip(missing);
        return;
      }
      const tc = new TestCase(s, title);
      let failure = null;
      try {
        // The server is up at the start of every test, even after a failed one.
        if (!s.server.running) await s.server.start();
        await fn(tc);
      } catch (e) {
        failure = e;
      }
      await tc.finish(failure);
    });

  return s;
}

/**
 * One test's browser state: its contexts and pages, everything their
 * consoles printed, and the errors that fail it.
 */
export class TestCase {
  constructor(s, title) {
    this.s = s;
    this.title = title;
    this.contexts = [];
    this.pages = [];
    this.messages = [];
    this.errors = [];
    /** Contexts the test took offline; `'*'` while the server is down. */
    this.down = new Set();
  }

  get server() {
    return this.s.server;
  }

  /** A fresh browser context: its own empty IndexedDB, so its own store and connection. */
  async newContext(label) {
    const context = await this.s.browser.newContext({ viewport: VIEWPORT, colorScheme: 'light' });
    context.label = label;
    this.contexts.push(context);
    return context;
  }

  /**
   * Opens the board in `context` (`query` e.g. `?token=dev-reader`) and
   * waits until the store is open; `label` names the page in messages.
   */
  async openBoard(context, { label = context.label, query = '' } = {}) {
    const page = await context.newPage();
    page.label = label;
    this.pages.push(page);
    page.on('console', (m) => {
      const where = m.location()?.url ? ` (${m.location().url}:${m.location().lineNumber})` : '';
      const text = m.text();
      const allowed =
        m.type() === 'error' && WS_FAILED.test(text) && (this.down.has('*') || this.down.has(context));
      const line = `[${label}] console.${m.type()}${allowed ? ' (allowed: offline)' : ''}: ${text}${where}`;
      this.messages.push(line);
      if (m.type() === 'error' && !allowed) this.errors.push(line);
    });
    page.on('pageerror', (e) => {
      const line = `[${label}] uncaught: ${e.stack || e.message || e}`;
      this.messages.push(line);
      this.errors.push(line);
    });
    page.on('crash', () => {
      const line = `[${label}] the page crashed`;
      this.messages.push(line);
      this.errors.push(line);
    });
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

  async finish(failure) {
    // Let errors already in flight (a rejected promise, a late console line) arrive.
    await sleep(100);
    const errors = [...this.errors];
    if (failure || errors.length) {
      for (const page of this.pages) {
        if (page.isClosed()) continue;
        await page
          .screenshot({ path: path.join(ARTIFACTS, `FAILED-${this.s.name}-${slug(this.title)}-${slug(page.label)}.png`), fullPage: true })
          .catch(() => {});
      }
    }
    for (const context of this.contexts) await context.close().catch(() => {});
    fs.writeFileSync(path.join(ARTIFACTS, `${this.s.name}-${slug(this.title, 40)}-console.log`), `${this.messages.join('\n')}\n`);
    if (!failure && errors.length === 0) return;
    const report = [
      errors.length ? `--- console errors and uncaught exceptions (${errors.length}) ---\n${errors.join('\n')}` : null,
      `--- browser console ---\n${this.messages.join('\n') || '(empty)'}`,
      `--- sync-server log (tail) ---\n${this.server.log(30)}`,
    ]
      .filter(Boolean)
      .join('\n');
    if (failure) {
      if (failure instanceof Error) {
        const stack = failure.stack ?? '';
        failure.message = `${failure.message}\n${report}`;
        failure.stack = `${stack}\n${report}`;
        throw failure;
      }
      throw new Error(`${String(failure)}\n${report}`);
    }
    throw new Error(`the page reported errors\n${report}`);
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
