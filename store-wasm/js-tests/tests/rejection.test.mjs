// Ops the server refuses are rolled back: the value returns to the confirmed
// one, a `rejected` event carries the server's code and message, and
// `confirmed(opId)` rejects with that code.
//
// The writes are made before the store has ever reached the server (a fresh
// store behind a cut proxy), so it knows neither the server's schemas nor
// its rights and cannot refuse them itself: the refusal must come from the
// server.
import assert from 'node:assert/strict';
import { READ_TOKEN, suite } from '../harness.mjs';

const s = suite();

/** Opens `name` behind a cut proxy, runs `write` in the page, then lets it reach the server. */
async function writeThenConnect(tc, { name, token, write }) {
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const proxy = await tc.proxy();
  proxy.cut();
  const page = await tc.newPage(null, { label: name });
  await tc.open(page, { name, sync: tc.syncOptions({ url: proxy.wsUrl, token }) });
  const before = await page.evaluate(async (write) => {
    const store = window.store;
    window.rejected = [];
    window.events = [];
    store.on('rejected', (r) => window.rejected.push(r));
    store.watch('task', {}, (event) => event && window.events.push(event));
    // eslint-disable-next-line no-new-func
    const writes = await new Function('store', `return (${write})(store)`)(store);
    window.confirmations = writes.map((w) => window.helpers.settle(store.confirmed(w.opId)));
    return { writes, status: store.status() };
  }, write.toString());
  proxy.restore();
  return { page, before };
}

s.test('a value the server schema refuses is rolled back', async (tc) => {
  const metrics0 = await tc.server.metrics();
  const { page, before } = await writeThenConnect(tc, {
    name: 'reject-schema',
    write: async (store) => [
      await store.set('task', 'good', { title: 'fine' }),
      await store.set('task', 'bad', { title: '' }),
      await store.set('task', 'good', { title: '' }),
    ],
  });
  assert.deepEqual(before.writes.map((w) => w.result), ['created', 'created', 'updated']);
  assert.equal(before.status.pending, 3);

  const after = await page.evaluate(async () => {
    const store = window.store;
    const { waitFor } = window.helpers;
    await waitFor(() => window.rejected.length >= 2 && store.status().pending === 0, () => `two rejections (status ${JSON.stringify(store.status())}, rejected ${JSON.stringify(window.rejected)})`);
    return {
      rejected: window.rejected,
      confirmations: await Promise.all(window.confirmations),
      good: store.get('task', 'good'),
      bad: store.get('task', 'bad') ?? null,
      keys: store.keys('task'),
      events: window.events,
      status: store.status(),
    };
  });
  const [good1, bad, good2] = before.writes;
  assert.deepEqual(
    after.rejected.map((r) => [r.opId, r.kind, r.key, r.code]).sort(),
    [
      [bad.opId, 'task', 'bad', 'validation'],
      [good2.opId, 'task', 'good', 'validation'],
    ].sort(),
  );
  assert.ok(after.rejected.every((r) => typeof r.message === 'string' && r.message.length > 0));
  // confirmed(): the first write acked, the other two rejected with the server's code.
  assert.equal(after.confirmations[0].ok, true);
  assert.deepEqual([after.confirmations[0].value.opId, after.confirmations[0].value.version], [good1.opId, 1]);
  for (const c of after.confirmations.slice(1)) {
    assert.equal(c.ok, false);
    assert.equal(c.error.isError, true);
    assert.equal(c.error.name, 'ZestorError');
    assert.equal(c.error.code, 'validation');
  }
  // Rolled back: `bad` is gone, `good` is back at its confirmed value.
  assert.equal(after.bad, null);
  assert.deepEqual(after.keys, ['good']);
  assert.deepEqual([after.good.value, after.good.version, after.good.pending], [{ title: 'fine' }, 1, false]);
  // Watchers saw the rollback as changes.
  const last = (key) => after.events.filter((e) => e.key === key).at(-1);
  assert.deepEqual([last('bad').type, last('bad').pending], ['delete', false]);
  assert.deepEqual([last('good').type, last('good').value, last('good').version], ['update', { title: 'fine' }, 1]);
  assert.equal(after.status.pending, 0);

  const server = await tc.serverSnapshot();
  assert.equal(server.entries['task/bad'], undefined);
  assert.deepEqual([server.entries['task/good'].value, server.entries['task/good'].version], [{ title: 'fine' }, 1]);
  const metrics1 = await tc.server.metrics();
  assert.equal(metrics1.zestor_ops_acked_total - metrics0.zestor_ops_acked_total, 1);
  assert.equal(metrics1.zestor_ops_rejected_total - metrics0.zestor_ops_rejected_total, 2);
});

s.test('a write with a read-only token is rejected with `forbidden` and rolled back', async (tc) => {
  const { page, before } = await writeThenConnect(tc, {
    name: 'reject-read-only',
    token: READ_TOKEN,
    write: async (store) => [await store.set('task', 'ro', { title: 'not allowed' })],
  });
  assert.equal(before.writes[0].result, 'created');
  const after = await page.evaluate(async () => {
    const store = window.store;
    await window.helpers.waitFor(() => window.rejected.length >= 1 && store.status().pending === 0, () => `the rejection (status ${JSON.stringify(store.status())})`);
    await window.helpers.waitFor(() => store.status().connection === 'online', 'a read-only store to stay connected');
    return {
      rejected: window.rejected,
      confirmation: await window.confirmations[0],
      entry: store.get('task', 'ro') ?? null,
      events: window.events,
    };
  });
  assert.deepEqual(
    after.rejected.map((r) => [r.opId, r.kind, r.key, r.code]),
    [[before.writes[0].opId, 'task', 'ro', 'forbidden']],
  );
  assert.ok(after.rejected[0].message.length > 0);
  assert.equal(after.confirmation.ok, false);
  assert.equal(after.confirmation.error.code, 'forbidden');
  assert.equal(after.confirmation.error.isError, true);
  assert.equal(after.entry, null);
  assert.deepEqual(
    after.events.filter((e) => e.key === 'ro').map((e) => [e.type, e.pending]),
    [
      ['create', true],
      ['delete', false],
    ],
  );
  const server = await tc.serverSnapshot();
  assert.equal(server.entries['task/ro'], undefined);
});
