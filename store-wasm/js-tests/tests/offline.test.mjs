// Offline writes: they persist in IndexedDB across a reload, stay pending
// while the server is unreachable, and reach it exactly once afterwards.
//
// The network is cut with a TCP proxy between the page and the server:
// Chromium's `context.setOffline(true)` refuses new WebSockets but leaves an
// open one silently stalled (frames are held, not failed, until it goes back
// online), and it would also stop the reload of the page itself.
import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';

const s = suite();

const KEYS = ['off1', 'off2', 'off3'];

s.test('writes made offline survive a reload as pending and sync exactly once when back online', async (tc) => {
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const proxy = await tc.proxy();
  const sync = tc.syncOptions({ url: proxy.wsUrl });
  const context = await tc.newContext();
  const a = await tc.newPage(context, { label: 'A' });
  await tc.open(a, { name: 'offline-a', sync });
  await tc.online(a);
  const metrics0 = await tc.server.metrics();

  proxy.cut();
  const offline = await a.evaluate(async (keys) => {
    const store = window.store;
    const { waitFor, sleep } = window.helpers;
    await waitFor(() => store.status().connection !== 'online', () => `A to notice the cut (status ${JSON.stringify(store.status())})`);
    const writes = [];
    for (const [i, key] of keys.entries()) writes.push(await store.set('task', key, { title: `offline ${i + 1}` }));
    await sleep(1000); // reconnect attempts fail meanwhile
    return {
      writes,
      status: store.status(),
      entries: keys.map((k) => store.get('task', k)),
    };
  }, KEYS);
  assert.deepEqual(offline.writes.map((w) => [w.result, w.version]), [['created', 1], ['created', 1], ['created', 1]]);
  assert.ok(offline.writes.every((w) => typeof w.opId === 'string'), 'each write has an op id');
  assert.equal(new Set(offline.writes.map((w) => w.opId)).size, 3, 'op ids are distinct');
  assert.equal(offline.status.pending, 3);
  assert.notEqual(offline.status.connection, 'online');
  assert.ok(offline.entries.every((e) => e.pending === true), JSON.stringify(offline.entries));

  // Reload: a new page instance in the same context (same IndexedDB), still cut off.
  await tc.reload(a);
  await tc.open(a, { name: 'offline-a', sync });
  const reopened = await a.evaluate(async ([keys, opIds]) => {
    const store = window.store;
    const right = { status: store.status(), entries: keys.map((k) => store.get('task', k) ?? null) };
    // Ask for the acks of the ops written before the reload.
    window.confirmations = opIds.map((id) => window.helpers.settle(store.confirmed(id)));
    await window.helpers.sleep(1000);
    return { ...right, later: store.status() };
  }, [KEYS, offline.writes.map((w) => w.opId)]);
  assert.deepEqual(
    reopened.entries.map((e) => e && [e.value.title, e.version, e.pending]),
    [
      ['offline 1', 1, true],
      ['offline 2', 1, true],
      ['offline 3', 1, true],
    ],
  );
  assert.equal(reopened.status.pending, 3);
  assert.notEqual(reopened.status.connection, 'online');
  assert.equal(reopened.later.pending, 3);
  assert.notEqual(reopened.later.connection, 'online');
  const metrics1 = await tc.server.metrics();
  assert.equal(metrics1.zestor_ops_acked_total, metrics0.zestor_ops_acked_total, 'nothing reached the server while cut off');

  proxy.restore();
  const back = await a.evaluate(async (keys) => {
    const store = window.store;
    const { waitFor } = window.helpers;
    await waitFor(() => store.status().pending === 0 && store.status().connection === 'online', () => `A to sync (status ${JSON.stringify(store.status())})`);
    return {
      confirmations: await Promise.all(window.confirmations),
      entries: keys.map((k) => store.get('task', k) ?? null),
      status: store.status(),
    };
  }, KEYS);
  assert.deepEqual(
    back.confirmations.map((c) => (c.ok ? [c.value.result, c.value.version] : c.error)),
    [['created', 1], ['created', 1], ['created', 1]],
  );
  assert.deepEqual(
    back.entries.map((e) => e && [e.version, e.pending]),
    [[1, false], [1, false], [1, false]],
    'once acked (nothing pending), each entry is there, confirmed',
  );
  assert.equal(back.status.error, null);

  // Exactly once: three acks in all, and each key at version 1 on the server ...
  const metrics2 = await tc.server.metrics();
  assert.equal(metrics2.zestor_ops_acked_total - metrics0.zestor_ops_acked_total, 3);
  assert.equal(metrics2.zestor_ops_rejected_total - metrics0.zestor_ops_rejected_total, 0);
  const server = await tc.serverSnapshot();
  for (const [i, key] of KEYS.entries()) {
    assert.deepEqual([server.entries[`task/${key}`]?.value, server.entries[`task/${key}`]?.version], [{ title: `offline ${i + 1}` }, 1], key);
  }
  // ... and in a fresh client.
  const b = await tc.newPage(null, { label: 'B' });
  await tc.open(b, { name: 'offline-b', sync: tc.syncOptions() });
  await tc.online(b);
  const atB = await b.evaluate(async (keys) => {
    const store = window.store;
    await window.helpers.waitFor(() => keys.every((k) => store.get('task', k)), () => `B to hold ${keys} (it holds ${store.keys('task')})`);
    return keys.map((k) => store.get('task', k) ?? null);
  }, KEYS);
  assert.deepEqual(
    atB.map((e) => e && [e.value.title, e.version, e.pending]),
    [
      ['offline 1', 1, false],
      ['offline 2', 1, false],
      ['offline 3', 1, false],
    ],
  );
});
