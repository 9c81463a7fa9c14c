// What the browser tests of the npm package (store-wasm/js-tests/harness.mjs)
// and of the web demo (tests/e2e/harness.mjs) share: a real sync-server
// process on a temporary SQLite file, headless Chromium, and a test case
// that fails on any console error or uncaught exception in its pages.
//
// This module imports only Node's own modules. playwright-core is each test
// folder's own dependency (its package.json, its `npm ci`), so a folder's
// harness hands it in: `browserSuite({ playwright: () => import('playwright-core'), … })`
// makes Node resolve it from that folder's node_modules.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

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

/** `promise`, or the error `message()` after `ms` (the timer does not outlive the promise). */
export function within(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The last `lines` lines of `file`. */
export function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Cargo's target directory (`cargo metadata`, so CARGO_TARGET_DIR and .cargo/config count). */
export function cargoTargetDir() {
  const metadata = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: REPO, encoding: 'utf8' }),
  );
  return metadata.target_directory;
}

/** The sync-server binary: $ZESTOR_SYNC_SERVER (the runners set it), else cargo's build of `profile`. */
export function serverBinary(profile = 'debug') {
  if (process.env.ZESTOR_SYNC_SERVER) return process.env.ZESTOR_SYNC_SERVER;
  return path.join(cargoTargetDir(), profile, 'sync-server');
}

/**
 * A sync-server process on a SQLite file in `dir`, run there with `args`
 * (the flags besides --db and --listen). It keeps its port and its database
 * across `stop()`/`kill()` and `start()`, so clients reconnect to the same
 * URL and find the same data. `profile`: the cargo build it runs without
 * $ZESTOR_SYNC_SERVER.
 */
export class SyncServerProcess {
  constructor(dir, { args = [], db = 'db.sqlite', profile = 'debug' } = {}) {
    this.dir = dir;
    this.args = args;
    this.profile = profile;
    this.db = path.join(dir, db);
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

  /** Starts the server (on a free port the first time, on the same port after) and waits for /healthz. */
  async start() {
    if (this.proc) throw new Error('the server is already running');
    const log = fs.openSync(this.logFile, 'a');
    fs.writeSync(log, `\n==== start ${++this.starts}\n`);
    const args = ['--db', `sqlite://${this.db}`, '--listen', `127.0.0.1:${this.port}`, ...this.args];
    const proc = spawn(serverBinary(this.profile), args, {
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

  /** Stops the server as an operator would (SIGTERM: it drains and closes sessions with 1001). */
  async stop() {
    await this.#end('SIGTERM');
  }

  /** Kills the server outright (SIGKILL), as a crash would. */
  async kill() {
    await this.#end('SIGKILL');
  }

  /** Kills (or, with `{ graceful: true }`, stops) the server and starts it again on the same port and database. */
  async restart({ graceful = false } = {}) {
    await (graceful ? this.stop() : this.kill());
    await this.start();
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

/** Why Chromium cannot run here, or null. */
export function chromiumMissing() {
  return fs.existsSync(CHROMIUM) ? null : `Chromium not found at ${CHROMIUM} (scripts/install-browser-tools.sh installs it)`;
}

/**
 * Sets up a test file: a server and a headless Chromium for its tests, both
 * stopped after them. Returns `s`: `{ server, browser, dir, test }` and
 * whatever the caller adds.
 *
 * - `playwright`: `() => import('playwright-core')`, written in the caller's
 *   module so that the caller's node_modules provide it.
 * - `missing`: why the tests cannot run here (null when they can): each test
 *   is then skipped, or fails under ZESTOR_REQUIRE_ALL=1.
 * - `tmpPrefix`: the name of the file's temporary folder, under the OS's.
 * - `newServer(dir)`: a `SyncServerProcess` (not started) in that folder.
 * - `newTestCase(s, t, title)`: the `BrowserTestCase` a test's `fn` gets.
 * - `chromiumArgs`, `timeout` (per test, ms).
 * - `setUp(s)` runs before the server starts, `tearDown(s)` after it stops.
 *
 * `s.test(title, fn, { timeout })` runs `fn(tc)` with a fresh test case,
 * with the server up at its start (started again if an earlier test left it
 * down), and fails it on the console errors `tc` collected.
 */
export function browserSuite({
  playwright,
  missing,
  tmpPrefix,
  newServer,
  newTestCase,
  chromiumArgs = CHROMIUM_ARGS,
  timeout: defaultTimeout,
  setUp = null,
  tearDown = null,
}) {
  const s = { server: null, browser: null, dir: null };

  before(async () => {
    if (missing) return;
    await setUp?.(s);
    s.dir = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
    s.server = newServer(s.dir);
    // Interrupted (Ctrl-C): the server goes with the test process.
    process.once('exit', () => s.server?.killNow());
    for (const signal of ['SIGINT', 'SIGTERM']) {
      process.once(signal, () => {
        s.server?.killNow();
        process.exit(130);
      });
    }
    await s.server.start();
    const { chromium } = await playwright();
    s.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs });
  });

  after(async () => {
    await s.browser?.close().catch(() => {});
    await s.server?.stop();
    await tearDown?.(s);
    if (s.dir && !process.env.ZESTOR_KEEP_TMP) fs.rmSync(s.dir, { recursive: true, force: true });
  });

  s.test = (title, fn, { timeout = defaultTimeout } = {}) =>
    test(title, { timeout }, async (t) => {
      if (missing) {
        if (REQUIRE_ALL) throw new Error(`${missing}; ZESTOR_REQUIRE_ALL=1 forbids skipping`);
        t.skip(missing);
        return;
      }
      const tc = newTestCase(s, t, title);
      let failure = null;
      try {
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
 * One test's browser state: the contexts and pages it opened, everything
 * their consoles printed, and the errors that fail it. `finish()` closes
 * the contexts and fails the test on those errors, or adds them, the whole
 * console and the server log's tail to its failure.
 */
export class BrowserTestCase {
  constructor(s, title) {
    this.s = s;
    this.title = title;
    this.contexts = [];
    this.pages = [];
    this.messages = [];
    this.errors = [];
    this.allowed = [];
    /** How long `finish()` waits for errors already in flight (a rejected promise, a late console line). */
    this.settleMs = 50;
  }

  get server() {
    return this.s.server;
  }

  /** A fresh browser context (`options` as for Playwright's `browser.newContext`): its own empty IndexedDB. */
  async newContext(options = {}) {
    const context = await this.s.browser.newContext(options);
    this.contexts.push(context);
    return context;
  }

  /**
   * Records what `page` prints as `[label] …`: console errors, uncaught
   * exceptions and crashes fail the test, except console lines for which
   * `allow(message)` returns a reason (kept in the record as `(allowed: reason)`).
   */
  watch(page, label, allow = () => null) {
    page.label = label;
    this.pages.push(page);
    page.on('console', (m) => {
      const where = m.location()?.url ? ` (${m.location().url}:${m.location().lineNumber})` : '';
      const allowed = m.type() === 'error' ? allow(m) : null;
      const line = `[${label}] console.${m.type()}${allowed ? ` (allowed: ${allowed})` : ''}: ${m.text()}${where}`;
      this.messages.push(line);
      if (m.type() === 'error' && !allowed) this.errors.push(line);
    });
    page.on('pageerror', (e) => this.#error(`[${label}] uncaught: ${e.stack || e.message || e}`));
    page.on('crash', () => this.#error(`[${label}] the page crashed`));
    return page;
  }

  #error(line) {
    this.messages.push(line);
    this.errors.push(line);
  }

  /** Console errors matching `pattern` (a RegExp) do not fail this test. */
  allowConsoleErrors(pattern) {
    this.allowed.push(pattern);
  }

  /** The console errors and uncaught exceptions so far that fail the test. */
  unexpectedErrors() {
    return this.errors.filter((line) => !this.allowed.some((re) => re.test(line)));
  }

  /** Forgets the errors so far (for tests of the harness itself). */
  clearErrors() {
    this.errors = [];
  }

  /** Called by `finish()` before it closes the contexts (screenshots, saved consoles). */
  async beforeClose(_failure, _errors) {}

  async finish(failure) {
    await sleep(this.settleMs);
    const errors = this.unexpectedErrors();
    await this.beforeClose(failure, errors);
    for (const context of this.contexts) await context.close().catch(() => {});
    this.probe = null;
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
        // Reporters print the stack (which starts with the message); V8
        // builds it lazily from the message, so read it first.
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
