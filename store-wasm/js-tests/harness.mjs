// The browser test harness of the npm package: a real sync-server on a
// temporary SQLite file, headless Chromium through playwright-core, and
// pages served by the server that load the package as a plain
// <script type="module"> does (`zestor/url`). The server process, the
// browser's setup and the console-error checks are shared with the web
// demo's tests, in
// tests/harness/browser.mjs; this file holds what the package's tests add.
//
// A test file calls `suite()` once; it starts the server and the browser
// before its tests and stops both after them. `s.test(name, fn)` runs `fn(tc)`
// where `tc` opens pages in fresh browser contexts (empty IndexedDB) and
// fails the test on any console error or uncaught exception in them.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  BrowserTestCase,
  CHROMIUM_ARGS as BASE_CHROMIUM_ARGS,
  REPO,
  SyncServerProcess,
  browserSuite,
  chromiumMissing,
} from '../../tests/harness/browser.mjs';

export { CHROMIUM, REQUIRE_ALL } from '../../tests/harness/browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

export const CHROMIUM_ARGS = [
  ...BASE_CHROMIUM_ARGS,
  // window.gc(), for tests of what the garbage collector may free.
  '--js-flags=--expose-gc',
];
export const PKG_DIR = process.env.ZESTOR_PKG_DIR || path.join(REPO, 'store-wasm/pkg/npm');

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

/**
 * A sync-server (cargo's debug build, without $ZESTOR_SYNC_SERVER) on a
 * SQLite file in `dir`, with the test tokens, the `task` schema, and the test
 * pages with the package at /pkg/ as its static dir. It keeps its port and
 * its database across `stop()`/`kill()` and `start()`, so clients reconnect
 * to the same URL and find the same data.
 */
export class SyncServer extends SyncServerProcess {
  constructor(dir, extraArgs = []) {
    const tokens = path.join(dir, 'tokens.txt');
    const schemas = path.join(dir, 'schemas');
    const staticDir = path.join(dir, 'static');
    fs.writeFileSync(tokens, `# TOKEN NAMESPACE read|read_write\n${TOKEN} ${NAMESPACE} read_write\n${READ_TOKEN} ${NAMESPACE} read\n`);
    fs.mkdirSync(schemas);
    fs.writeFileSync(path.join(schemas, 'task.json'), JSON.stringify(TASK_SCHEMA));
    // The test pages, and the package at /pkg/ (a copy, so a rebuild during
    // a run does not change it under the tests).
    fs.cpSync(path.join(here, 'static'), staticDir, { recursive: true });
    fs.cpSync(PKG_DIR, path.join(staticDir, 'pkg'), { recursive: true });
    super(dir, {
      args: ['--tokens', tokens, '--schemas', schemas, '--static-dir', staticDir, ...extraArgs],
      profile: 'debug',
    });
    this.tokens = tokens;
    this.schemas = schemas;
    this.static = staticDir;
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
  return chromiumMissing();
}

/**
 * Sets up a test file: a fresh server and a browser for its tests, both
 * stopped after them. Returns `{ server, browser, test, proxy, syncOptions }`.
 * `options.serverArgs`: more sync-server flags (e.g. `['--retention', '1']`).
 */
export function suite(options = {}) {
  const s = browserSuite({
    playwright: () => import('playwright-core'),
    missing: browserMissing(),
    tmpPrefix: 'zestor-js-tests-',
    newServer: (dir) => new SyncServer(dir, options.serverArgs),
    newTestCase: (s, t, title) => new TestCase(s, t, title),
    chromiumArgs: CHROMIUM_ARGS,
    timeout: TEST_TIMEOUT_MS,
    tearDown: async (s) => {
      for (const p of s.proxies) await p.close().catch(() => {});
    },
  });
  s.proxies = [];

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
 * their consoles printed, and the errors that fail it (see
 * `BrowserTestCase`), with the test pages' own helpers.
 */
export class TestCase extends BrowserTestCase {
  constructor(s, t, title) {
    super(s, title);
    this.t = t;
    this.unnamed = 0;
  }

  /**
   * A page of the test site (in `context`, else in a new context), with the
   * package loaded: `await window.zestorReady` is the initialised module.
   */
  async newPage(context = null, { label = null } = {}) {
    context ??= await this.newContext();
    const page = this.watch(await context.newPage(), label ?? `page${++this.unnamed}`);
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
}
