// The harness itself, against the package as it is today: the server speaks
// the protocol with the test tokens and schema, the package loads the way a
// plain module loads it, and page errors fail tests.
import assert from 'node:assert/strict';
import { NAMESPACE, READ_TOKEN, TOKEN, suite } from '../harness.mjs';

const s = suite();

s.test('zestor/url loads the module from /pkg/zestor_bg.wasm, served as application/wasm', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const wasm = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('.wasm'));
    const res = await fetch('/pkg/zestor_bg.wasm');
    return { fetched: wasm.map((e) => new URL(e.name).pathname), wasmType: res.headers.get('content-type') };
  });
  assert.deepEqual(got.fetched, ['/pkg/zestor_bg.wasm']);
  // instantiateStreaming needs it; without it wasm-bindgen falls back with a warning.
  assert.equal(got.wasmType, 'application/wasm');
});

s.test('the server applies, validates and refuses ops as configured, and keeps them across a restart', async (tc) => {
  const page = await tc.newPage();
  const run = (token, op) =>
    page.evaluate(
      async ([url, ns, token, op]) => {
        const s = await window.helpers.RawSession.open(url, ns, token);
        try {
          return { welcome: s.welcome, answer: await s.push(op) };
        } finally {
          await s.close();
        }
      },
      [tc.server.wsUrl, NAMESPACE, token, op],
    );
  const before = await tc.server.metrics();

  const ok = await run(TOKEN, { kind: 'task', key: 'smoke', value: { title: 'hello' } });
  assert.equal(ok.welcome.rights, 'read_write');
  assert.deepEqual(ok.welcome.schemas.task.required, ['title']);
  assert.equal(ok.answer.type, 'ack');
  assert.equal(ok.answer.result, 'created');
  assert.equal(ok.answer.version, 1);

  const invalid = await run(TOKEN, { kind: 'task', key: 'smoke-bad', value: { title: '' } });
  assert.equal(invalid.answer.type, 'reject');
  assert.equal(invalid.answer.code, 'validation');

  const readOnly = await run(READ_TOKEN, { kind: 'task', key: 'smoke-ro', value: { title: 'no' } });
  assert.equal(readOnly.welcome.rights, 'read');
  assert.equal(readOnly.answer.type, 'reject');
  assert.equal(readOnly.answer.code, 'forbidden');

  // The read-only reject comes from the session, before the store: the
  // server does not count it in zestor_ops_rejected_total.
  const after = await tc.server.metrics();
  assert.equal(after.zestor_ops_acked_total - before.zestor_ops_acked_total, 1);
  assert.ok(after.zestor_ops_rejected_total - before.zestor_ops_rejected_total >= 1);

  await tc.server.restart();
  const snap = await tc.serverSnapshot();
  assert.deepEqual(snap.entries['task/smoke'].value, { title: 'hello' });
  assert.equal(snap.entries['task/smoke'].version, 1);
  assert.equal(snap.entries['task/smoke-bad'], undefined);
  assert.equal(snap.rev, ok.answer.rev);
});

s.test('a console error or an uncaught exception in a page fails the test', async (tc) => {
  const page = await tc.newPage();
  assert.deepEqual(tc.unexpectedErrors(), []);
  await page.evaluate(() => console.error('deliberate console error'));
  await page.evaluate(() => setTimeout(() => { throw new Error('deliberate uncaught error'); }));
  await page.evaluate(() => { Promise.reject(new Error('deliberate unhandled rejection')); });
  await page.waitForTimeout(200);
  const errors = tc.unexpectedErrors().join('\n');
  assert.match(errors, /deliberate console error/);
  assert.match(errors, /deliberate uncaught error/);
  assert.match(errors, /deliberate unhandled rejection/);
  tc.allowConsoleErrors(/deliberate console error/);
  assert.doesNotMatch(tc.unexpectedErrors().join('\n'), /deliberate console error/);
  tc.clearErrors();
});

s.test('the proxy cuts and restores the connection to the server', async (tc) => {
  const proxy = await tc.proxy();
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const page = await tc.newPage();
  const connect = () =>
    page.evaluate(
      ([url, ns, token]) =>
        window.helpers.RawSession.open(url, ns, token).then(
          (s) => ((window.raw = s), 'open'),
          (e) => String(e.message),
        ),
      [proxy.wsUrl, NAMESPACE, TOKEN],
    );
  assert.equal(await connect(), 'open');
  proxy.cut();
  assert.equal(typeof (await page.evaluate(() => window.raw.closed)), 'number');
  assert.match(await connect(), /cannot connect/);
  proxy.restore();
  assert.equal(await connect(), 'open');
});
