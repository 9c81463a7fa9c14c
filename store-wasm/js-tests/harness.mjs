// The browser test harness: a real sync-server on a temporary SQLite file,
// headless Chromium through playwright-core, and pages served by the server
// that load the package the way a user of its `web` build does.
//
// A test file calls `suite()` once; it starts the server and the browser
// before its tests and stops both after them. `s.test(name, fn)` runs `fn(tc)`
// where `tc` opens pages in fresh browser contexts (empty IndexedDB) and
// fails the test on any console error or uncaught exception in them.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');

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
  // window.gc(), for tests of what the garbage collector may free.
  '--js-flags=--expose-gc',
];
export const PKG_DIR = process.env.ZESTOR_PKG_DIR || path.join(repo, 'store-wasm/pkg/web');

export const NAMESPACE = 't';
export const TOKEN = 'rw-token';
export const READ_TOKEN = 'read-token';
/** The server-side schema of kind `task`. */
export const TASK_SCHEMA = {
  type: 'object',
  properties: { title: { type: 'string', minLength: 1 } },
  required: ['title'],
};

const TEST_TIMEOUT_MS = 90_000;

/** The sync-server binary: $ZESTOR_SYNC_SERVER (set by run.mjs), else cargo's debug build. */
export function serverBinary() {
  if (process.env.ZESTOR_SYNC_SERVER) return process.env.ZESTOR_SYNC_SERVER;
  const metadata = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: repo, encoding: 'utf8' }),
  );
  return path.join(metadata.target_directory, 'debug', 'sync-server');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or the error `message()` after `ms` (the timer does not outlive the promise). */
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

/**
 * A sync-server process on a SQLite file in `dir`. It keeps its port and its
 * database across `stop()`/`kill()` and `start()`, so clients reconnect to
 * the same URL and find the same data.
 */
export class SyncServer {
  constructor(dir, extraArgs = []) {
    this.dir = dir;
    this.extraArgs = extraArgs;
    this.db = path.join(dir, 'db.sqlite');
    this.tokens = path.join(dir, 'tokens.txt');
    this.schemas = path.join(dir, 'schemas');
    this.static = path.join(dir, 'static');
    this.logFile = path.join(dir, 'server.log');
    this.port = 0;
    this.proc = null;
    this.exited = null;
    this.starts = 0;

    fs.writeFileSync(this.tokens, `# TOKEN NAMESPACE read|read_write\n${TOKEN} ${NAMESPACE} read_write\n${READ_TOKEN} ${NAMESPACE} read\n`);
    fs.mkdirSync(this.schemas);
    fs.writeFileSync(path.join(this.schemas, 'task.json'), JSON.stringify(TASK_SCHEMA));
    // The test pages, and the package at /pkg/ (a copy, so a rebuild during
    // a run does not change it under the tests).
    fs.cpSync(path.join(here, 'static'), this.static, { recursive: true });
    fs.cpSync(PKG_DIR, path.join(this.static, 'pkg'), { recursive: true });
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/sync`;
  }

  /** Starts the server (on a free port the first time, on the same port after) and waits for /healthz. */
  async start() {
    if (this.proc) throw new Error('the server is already running');
    const log = fs.openSync(this.logFile, 'a');
    fs.writeSync(log, `\n==== start ${++this.starts}\n`);
    const args = [
      '--db', `sqlite://${this.db}`,
      '--listen', `127.0.0.1:${this.port}`,
      '--tokens', this.tokens,
      '--schemas', this.schemas,
      '--static-dir', this.static,
      ...this.extraArgs,
    ];
    const proc = spawn(serverBinary(), args, {
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
      this.exited.then(({ code, signal }) => reject(new Error(`sync-server exited (${code ?? signal}) before listening:\n${tail(this.logFile)}`)));
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

  /** Kills the process synchronously (for process exit). */
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

/**
 * A TCP proxy in front of the server, for cutting the network between a
 * browser and the server without stopping either: `cut()` closes every
 * connection through it and refuses new ones until `restore()`.
 */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.cutOff = false;
    this.sockets = new Set();
    this.connections = 0;
    this.server = net.createServer((client) => this.#accept(client));
  }

  async listen() {
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', resolve);
    });
    this.port = this.server.address().port;
    return this;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/sync`;
  }

  #accept(client) {
    if (this.cutOff) {
      client.destroy();
      return;
    }
    this.connections++;
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Closes every connection through the proxy and refuses new ones. */
  cut() {
    this.cutOff = true;
    for (const s of this.sockets) s.destroy();
  }

  /** Lets connections through again. */
  restore() {
    this.cutOff = false;
  }

  async close() {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Whether the browser can run here; a missing one is a skip, or a failure under ZESTOR_REQUIRE_ALL=1. */
export function browserMissing() {
  return fs.existsSync(CHROMIUM) ? null : `Chromium not found at ${CHROMIUM} (scripts/install-browser-tools.sh installs it)`;
}

/**
 * Sets up a test file: a fresh server and a browser for its tests, both
 * stopped after them. Returns `{ server, browser, test, proxy, syncOptions }`.
 */
/** `options.serverArgs`: more sync-server flags (e.g. `['--retention', '1']`). */
export function suite(options = {}) {
  const s = {
    server: null,
    browser: null,
    dir: null,
    proxies: [],
  };
  const missing = browserMissing();

  before(async () => {
    if (missing) return;
    s.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zestor-js-tests-'));
    s.server = new SyncServer(s.dir, options.serverArgs);
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
    for (const p of s.proxies) await p.close().catch(() => {});
    await s.server?.stop();
    if (s.dir && !process.env.ZESTOR_KEEP_TMP) fs.rmSync(s.dir, { recursive: true, force: true });
  });

  /** A test with a fresh `TestCase`; skipped (or failed, under ZESTOR_REQUIRE_ALL=1) without a browser. */
  s.test = (name, fn, { timeout = TEST_TIMEOUT_MS } = {}) =>
    test(name, { timeout }, async (t) => {
      if (missing) {
        if (REQUIRE_ALL) throw new Error(`${missing}; ZESTOR_REQUIRE_ALL=1 forbids skipping`);
        t.skip(missing);
        return;
      }
      const tc = new TestCase(s, t);
      let failure = null;
      try {
        await fn(tc);
      } catch (e) {
        failure = e;
      }
      await tc.finish(failure);
    });

  /** A proxy to the server (closed after the file). */
  s.proxy = async () => {
    const p = await new Proxy(s.server.port).listen();
    s.proxies.push(p);
    return p;
  };

  /** `SyncOptions` for the package: this server, namespace `t`, the read-write token, quick reconnects. */
  s.syncOptions = (overrides = {}) => ({
    url: s.server.wsUrl,
    namespace: NAMESPACE,
    token: TOKEN,
    backoffMinMs: 50,
    backoffMaxMs: 500,
    ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)),
  });

  return s;
}

/**
 * One test's browser state: the contexts and pages it opened, everything
 * their consoles printed, and the errors that fail it.
 */
export class TestCase {
  constructor(s, t) {
    this.s = s;
    this.t = t;
    this.contexts = [];
    this.messages = [];
    this.errors = [];
    this.allowed = [];
    this.pages = 0;
  }

  get server() {
    return this.s.server;
  }

  /** A fresh browser context: its own, empty, in-memory storage (IndexedDB survives reloads within it). */
  async newContext() {
    const context = await this.s.browser.newContext();
    this.contexts.push(context);
    return context;
  }

  /**
   * A page of the test site (in `context`, else in a new context), with the
   * package loaded: `await window.zestorReady` is the initialised module.
   */
  async newPage(context = null, { label = null } = {}) {
    context ??= await this.newContext();
    const page = await context.newPage();
    const name = label ?? `page${++this.pages}`;
    page.on('console', (m) => {
      const where = m.location()?.url ? ` (${m.location().url}:${m.location().lineNumber})` : '';
      const line = `[${name}] console.${m.type()}: ${m.text()}${where}`;
      this.messages.push(line);
      if (m.type() === 'error') this.errors.push(line);
    });
    page.on('pageerror', (e) => {
      const line = `[${name}] uncaught: ${e.stack || e.message || e}`;
      this.messages.push(line);
      this.errors.push(line);
    });
    page.on('crash', () => {
      const line = `[${name}] the page crashed`;
      this.messages.push(line);
      this.errors.push(line);
    });
    await this.load(page);
    return page;
  }

  /** Loads the test page in `page` and waits for the package to initialise. */
  async load(page) {
    await page.goto(`${this.server.url}/index.html`);
    await page.evaluate(() => window.zestorReady);
  }

  /** Reloads `page` (its context, and so its IndexedDB, stays) and waits for the package. */
  async reload(page) {
    await page.reload();
    await page.evaluate(() => window.zestorReady);
  }

  /** Opens a store in `page` as `window[as]` (`options` as for `open()`). */
  async open(page, options, as = 'store') {
    await page.evaluate(
      async ([options, as]) => {
        const z = await window.zestorReady;
        window[as] = await z.open(options);
      },
      [options, as],
    );
  }

  /** Waits until `window[as]` is online and has synced once; returns its status. */
  async online(page, as = 'store', timeout = 15000) {
    return page.evaluate(
      ([as, timeout]) =>
        window.helpers.waitFor(
          () => {
            const status = window[as].status();
            return status.connection === 'online' && status.lastSyncedRev !== null && status;
          },
          () => `${as} to be online and synced (status: ${JSON.stringify(window[as].status())})`,
          timeout,
        ),
      [as, timeout],
    );
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

  /** A `SyncOptions` object; see `suite().syncOptions`. */
  syncOptions(overrides) {
    return this.s.syncOptions(overrides);
  }

  proxy() {
    return this.s.proxy();
  }

  /**
   * What the server holds in namespace `t` now, read over the raw protocol
   * (not through the package): `{ rev, entries }`, entries keyed `kind/key`
   * with `value`, `version` and `rev`.
   */
  async serverSnapshot(token = TOKEN) {
    this.probe ??= await this.newPage(null, { label: 'probe' });
    return this.probe.evaluate(
      ([url, namespace, token]) => window.helpers.serverSnapshot(url, namespace, token),
      [this.server.wsUrl, NAMESPACE, token],
    );
  }

  async finish(failure) {
    // Let errors already in flight (a rejected promise, a late console line) arrive.
    await sleep(50);
    const errors = this.unexpectedErrors();
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
