// Tokens that expire. The server accepts HS256 JWTs (`--jwt-secret-file`,
// no leeway) besides the static test tokens; this file mints real ones with
// node:crypto and hands them out from a small HTTP endpoint, as an app's
// backend would. A store whose `sync.token` is a function asks it for a
// token before every connection: a session whose token expires reconnects
// with a fresh one and loses no write; a fresh token the server refuses
// stops the store; a plain string token that expires is tried once more,
// then the store stops; a function that fails counts as a failed attempt;
// `open()` refuses a token of another type.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { NAMESPACE, suite } from '../harness.mjs';

const SECRET = crypto.randomBytes(32).toString('hex');
const secretDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zestor-js-tests-jwt-'));
const secretFile = path.join(secretDir, 'jwt-secret');
fs.writeFileSync(secretFile, SECRET);
after(() => fs.rmSync(secretDir, { recursive: true, force: true }));

const s = suite({ serverArgs: ['--jwt-secret-file', secretFile, '--jwt-leeway-secs', '0'] });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** An HS256 JWT granting read_write on the test namespace, expiring in `ttl` seconds. */
function mint({ ttl = 3600, secret = SECRET } = {}) {
  const part = (object) => Buffer.from(JSON.stringify(object)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({
    sub: 'js-tests',
    iat: now,
    exp: now + ttl,
    zestor: { ns: { [NAMESPACE]: 'read_write' } },
  })}`;
  return `${unsigned}.${crypto.createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/**
 * The app's token endpoint: `GET /token` answers a fresh JWT (CORS open, so
 * the test page may fetch it). `plan` says how to answer the next requests
 * (`{ ttl, secret, delayMs }` each, in order); after it, tokens last an hour.
 * `issued` counts the requests.
 */
class Issuer {
  constructor(plan = []) {
    this.plan = plan;
    this.issued = 0;
    this.server = http.createServer((req, res) => this.#serve(res));
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/token`;
    return this;
  }

  async #serve(res) {
    const how = this.plan.shift() ?? {};
    this.issued++;
    if (how.delayMs) await sleep(how.delayMs);
    res.writeHead(200, { 'content-type': 'text/plain', 'access-control-allow-origin': '*' });
    res.end(mint(how));
  }

  close() {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(resolve));
  }
}

async function withIssuer(plan, fn) {
  const issuer = await new Issuer(plan).listen();
  try {
    return await fn(issuer);
  } finally {
    await issuer.close();
  }
}

/**
 * Opens `window.store` in `page` with `sync.token` a function that fetches a
 * token from `issuerUrl`; `window.tokenCalls` counts its calls and
 * `window.statuses` records every status from then on.
 */
async function openWithIssuer(page, name, sync, issuerUrl) {
  await page.evaluate(
    async ([name, sync, issuerUrl]) => {
      const z = await window.zestorReady;
      window.tokenCalls = 0;
      window.statuses = [];
      const token = async () => {
        window.tokenCalls++;
        const res = await fetch(issuerUrl);
        if (!res.ok) throw new Error(`the token endpoint answered ${res.status}`);
        return res.text();
      };
      window.store = await z.open({ name, sync: { ...sync, token } });
      window.store.on('status', (status) => window.statuses.push(status));
    },
    [name, sync, issuerUrl],
  );
}

/** Writes `counter`/`key` = `{ n }` for each n in `ns`; with `confirm`, waits for the server's acks. */
function count(page, key, ns, confirm) {
  return page.evaluate(
    async ([key, ns, confirm]) => {
      const acks = [];
      for (const n of ns) {
        const w = await window.store.set('counter', key, { n });
        if (confirm) acks.push(await window.store.confirmed(w.opId));
      }
      return { acks, status: window.store.status() };
    },
    [key, ns, confirm],
  );
}

/** Waits until `window.store` is offline with `unauthorized` in its status; returns the status. */
function refused(page) {
  return page.evaluate(() => {
    const status = () => window.store.status();
    return window.helpers.waitFor(
      () => status().connection === 'offline' && status().error?.code === 'unauthorized' && status(),
      () => `the store to be refused (status: ${JSON.stringify(status())})`,
    );
  });
}

s.test('a session whose token expires reconnects with a fresh token from the function, and every write arrives once', async (tc) => {
  // The first token expires 2-3 s into the session; the second is handed
  // out a second late, which keeps the store offline long enough to write.
  await withIssuer([{ ttl: 3 }, { delayMs: 1000 }], async (issuer) => {
    const page = await tc.newPage();
    await openWithIssuer(page, 'token-refresh', tc.syncOptions(), issuer.url);
    await tc.online(page);

    const before = await count(page, 'refresh', [1, 2, 3], true);
    assert.deepEqual(before.acks.map((a) => a.version), [1, 2, 3]);
    assert.equal(before.status.connection, 'online');
    assert.equal(await page.evaluate(() => window.tokenCalls), 1);

    const lost = await page.evaluate(() =>
      window.helpers.waitFor(
        () => window.store.status().error?.code === 'unauthorized' && window.store.status(),
        () => `the session to end (status: ${JSON.stringify(window.store.status())})`,
        10_000,
      ),
    );
    assert.match(lost.error.message, /expired/);
    assert.notEqual(lost.connection, 'online');

    const during = await count(page, 'refresh', [4, 5, 6], false);
    assert.notEqual(during.status.connection, 'online', 'the writes were meant for the gap');
    assert.equal(during.status.pending, 3);

    const back = await tc.online(page);
    assert.equal(back.error, null);
    await page.evaluate(() =>
      window.helpers.waitFor(() => window.store.status().pending === 0, 'the writes of the gap to be acked'),
    );
    const afterwards = await count(page, 'refresh', [7, 8, 9], true);
    assert.deepEqual(afterwards.acks.map((a) => a.version), [7, 8, 9]);

    const server = await tc.serverSnapshot();
    assert.deepEqual(server.entries['counter/refresh'].value, { n: 9 });
    assert.equal(server.entries['counter/refresh'].version, 9);

    const end = await page.evaluate(() => ({
      calls: window.tokenCalls,
      status: window.store.status(),
      entry: window.store.get('counter', 'refresh'),
      errors: window.statuses.map((s) => s.error?.code ?? null),
    }));
    assert.equal(end.calls, 2, 'the function is asked once per connection');
    assert.equal(issuer.issued, 2);
    assert.deepEqual([end.status.connection, end.status.error, end.status.pending], ['online', null, 0]);
    assert.deepEqual([end.entry.value, end.entry.version, end.entry.pending], [{ n: 9 }, 9, false]);
    // The error showed while offline, and cleared once welcomed again.
    assert.ok(end.errors.includes('unauthorized'));
    assert.equal(end.errors.at(-1), null);
  });
});

s.test('a fresh token the server refuses stops the store, and its pending writes stay', async (tc) => {
  await withIssuer([{ secret: `not the server's secret ${SECRET}` }], async (issuer) => {
    const page = await tc.newPage();
    await openWithIssuer(page, 'token-refused', tc.syncOptions(), issuer.url);
    await count(page, 'refused-a', [1], false);
    const stopped = await refused(page);
    assert.match(stopped.error.message, /signature/);
    assert.equal(stopped.lastSyncedRev, null);

    // Stopped: no retry (they would come every 50-500 ms).
    await sleep(1500);
    await count(page, 'refused-b', [1], false);
    const later = await page.evaluate(() => ({
      calls: window.tokenCalls,
      status: window.store.status(),
      a: window.store.get('counter', 'refused-a'),
      b: window.store.get('counter', 'refused-b'),
    }));
    assert.equal(later.calls, 1);
    assert.equal(issuer.issued, 1);
    assert.deepEqual([later.status.connection, later.status.error.code, later.status.pending], ['offline', 'unauthorized', 2]);
    assert.deepEqual([later.a.value, later.a.pending], [{ n: 1 }, true]);
    assert.deepEqual([later.b.value, later.b.pending], [{ n: 1 }, true]);

    // The writes are in IndexedDB: reopened with a token the server
    // accepts, the store sends them.
    await page.evaluate(() => window.store.close());
    await openWithIssuer(page, 'token-refused', tc.syncOptions(), issuer.url);
    await tc.online(page);
    await page.evaluate(() =>
      window.helpers.waitFor(() => window.store.status().pending === 0, 'the kept writes to be acked'),
    );
    const server = await tc.serverSnapshot();
    assert.equal(server.entries['counter/refused-a'].version, 1);
    assert.equal(server.entries['counter/refused-b'].version, 1);
    assert.equal(issuer.issued, 2);
  });
});

s.test('a string token that expires mid-session is tried once more, then the store stops', async (tc) => {
  const proxy = await tc.proxy();
  const page = await tc.newPage();
  // The reconnect comes at once: the server refuses a token from its
  // `exp` on, to the millisecond, though `exp` counts whole seconds.
  await tc.open(page, {
    name: 'token-string',
    sync: tc.syncOptions({ url: proxy.wsUrl, token: mint({ ttl: 3 }), backoffMinMs: 20, backoffMaxMs: 40 }),
  });
  await tc.online(page);
  const written = await count(page, 'string', [1], true);
  assert.equal(written.acks[0].version, 1);
  assert.equal(proxy.connections, 1);

  const deadline = Date.now() + 15_000;
  while (proxy.connections < 2 && Date.now() < deadline) await sleep(50);
  assert.equal(proxy.connections, 2, 'one reconnect after the expiry');
  await refused(page);

  // Longer than any retry delay: none comes.
  await sleep(2600);
  await count(page, 'string', [2], false);
  const status = await page.evaluate(() => window.store.status());
  assert.equal(proxy.connections, 2);
  assert.deepEqual([status.connection, status.error.code, status.pending], ['offline', 'unauthorized', 1]);
  const server = await tc.serverSnapshot();
  assert.deepEqual([server.entries['counter/string'].value, server.entries['counter/string'].version], [{ n: 1 }, 1]);
});

s.test('a token function that rejects or gives no string shows token_failed and is retried until it gives a token', async (tc) => {
  await withIssuer([], async (issuer) => {
    const page = await tc.newPage();
    const opId = await page.evaluate(
      async ([name, sync, issuerUrl]) => {
        const z = await window.zestorReady;
        window.tokenCalls = 0;
        window.statuses = [];
        let opened;
        const ready = new Promise((resolve) => (opened = resolve));
        const token = () => {
          window.tokenCalls++;
          // The first answer waits for the status listener below.
          if (window.tokenCalls === 1) {
            return ready.then(() => Promise.reject(new Error('the token service is down')));
          }
          if (window.tokenCalls === 2) return 42;
          return fetch(issuerUrl).then((res) => res.text());
        };
        window.store = await z.open({ name, sync: { ...sync, token } });
        window.store.on('status', (status) => window.statuses.push(status));
        const w = await window.store.set('counter', 'retried', { n: 1 });
        opened();
        return w.opId;
      },
      ['token-failed', tc.syncOptions(), issuer.url],
    );
    const status = await tc.online(page);
    assert.equal(status.error, null);
    const result = await page.evaluate(async (opId) => {
      const ack = await window.store.confirmed(opId);
      return { ack, errors: window.statuses.map((s) => s.error), calls: window.tokenCalls };
    }, opId);
    assert.equal(result.ack.version, 1);
    const failures = result.errors.filter((e) => e?.code === 'token_failed').map((e) => e.message);
    assert.ok(
      failures.some((m) => /the token service is down/.test(m)),
      `the rejection shows in the status: ${JSON.stringify(result.errors)}`,
    );
    assert.ok(failures.some((m) => /no string/.test(m)), `the number shows in the status: ${JSON.stringify(result.errors)}`);
    assert.equal(result.errors.at(-1), null);
    assert.equal(result.calls, 3);
    assert.equal(issuer.issued, 1);
    const server = await tc.serverSnapshot();
    assert.equal(server.entries['counter/retried'].version, 1);
  });
});

s.test('open() refuses a token that is neither a string nor a function, and malformed sync options', async (tc) => {
  const page = await tc.newPage();
  const refusals = await page.evaluate(async (sync) => {
    const z = await window.zestorReady;
    const attempt = (name, changes) =>
      window.helpers.caught(() => z.open({ name, sync: { ...sync, ...changes } }));
    return [
      await attempt('token-number', { token: 42 }),
      await attempt('token-missing', { token: undefined }),
      await attempt('token-no-url', { url: undefined }),
      await attempt('token-kinds', { kinds: 'task' }),
      await attempt('token-backoff', { backoffMinMs: '50' }),
    ];
  }, tc.syncOptions());
  for (const e of refusals) assert.deepEqual([e.isError, e.name, e.code], [true, 'ZestorError', 'invalid_argument']);
  assert.match(refusals[0].message, /token must be a string or a function/);
  assert.match(refusals[1].message, /token must be a string or a function/);
  assert.match(refusals[2].message, /url must be a string/);
  assert.match(refusals[3].message, /kinds must be an array of strings/);
  assert.match(refusals[4].message, /backoffMinMs must be a number/);
});
