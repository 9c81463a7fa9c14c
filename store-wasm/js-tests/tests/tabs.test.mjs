// Several tabs of one app on one store: two pages in one browser context
// share IndexedDB; one holds the connection (Web Lock), the other relays
// through it (BroadcastChannel) and takes over when it closes.
import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';

const s = suite();

s.test('two tabs on one store: one connection, writes from either reach the server and the other tab', async (tc) => {
  // Through a proxy, which counts the connections the tabs open.
  const proxy = await tc.proxy();
  const sync = tc.syncOptions({ url: proxy.wsUrl });
  const context = await tc.newContext();
  const first = await tc.newPage(context, { label: 'tab1' });
  const second = await tc.newPage(context, { label: 'tab2' });
  await tc.open(first, { name: 'tabs', sync });
  await tc.online(first);
  await tc.open(second, { name: 'tabs', sync });
  const statuses = await Promise.all(
    [first, second].map((p) => p.evaluate(() => window.store.status())),
  );
  assert.deepEqual(
    statuses.map((st) => st.leader),
    [true, false],
    'the first tab holds the connection, the second relays',
  );
  await second.evaluate(() =>
    window.helpers.waitFor(() => window.store.status().connection === 'online', "the leader's status at tab2"),
  );

  // A write in the relaying tab: durable locally, sent by the leader, acked.
  const fromSecond = await second.evaluate(async () => {
    const w = await window.store.set('task', 'from-2', { title: 'written in tab 2' });
    const ack = await window.store.confirmed(w.opId);
    return { w, ack, entry: window.store.get('task', 'from-2') };
  });
  assert.equal(fromSecond.ack.result, 'created');
  assert.deepEqual(fromSecond.entry.value, { title: 'written in tab 2' });
  await first.evaluate(() =>
    window.helpers.waitFor(() => window.store.get('task', 'from-2')?.pending === false, 'tab 2 write at tab 1'),
  );

  // A write in the leader shows in the other tab.
  await first.evaluate(() => window.store.set('task', 'from-1', { title: 'written in tab 1' }));
  await second.evaluate(() =>
    window.helpers.waitFor(() => window.store.get('task', 'from-1')?.pending === false, 'tab 1 write at tab 2'),
  );

  const server = await tc.serverSnapshot();
  assert.deepEqual(server.entries['task/from-1'].value, { title: 'written in tab 1' });
  assert.deepEqual(server.entries['task/from-2'].value, { title: 'written in tab 2' });
  assert.equal(proxy.connections, 1, 'one connection serves both tabs');
});

s.test('closing the leading tab hands over: the other tab connects and delivers its queued ops once', async (tc) => {
  const proxy = await tc.proxy();
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const context = await tc.newContext();
  const first = await tc.newPage(context, { label: 'tab1' });
  const second = await tc.newPage(context, { label: 'tab2' });
  const sync = tc.syncOptions({ url: proxy.wsUrl, backoffMinMs: 50, backoffMaxMs: 200 });
  await tc.open(first, { name: 'handover', sync });
  await tc.online(first);
  await tc.open(second, { name: 'handover', sync });

  // The network goes; tab 2 queues writes (through the shared IndexedDB).
  proxy.cut();
  await first.evaluate(() =>
    window.helpers.waitFor(() => window.store.status().connection !== 'online', 'tab 1 to notice the cut'),
  );
  const queued = await second.evaluate(async () => {
    const store = window.store;
    for (const n of [1, 2, 3]) await store.set('task', `q${n}`, { title: `queued ${n}` });
    return store.status().pending;
  });
  assert.equal(queued, 3);
  await first.evaluate(() =>
    window.helpers.waitFor(() => window.store.status().pending === 3, 'tab 1 to hold the queued ops'),
  );

  // The leader closes; the network returns; tab 2 takes over and delivers.
  await first.evaluate(() => window.store.close());
  await first.close();
  proxy.restore();
  const after = await second.evaluate(async () => {
    const store = window.store;
    await window.helpers.waitFor(
      () => store.status().leader && store.status().connection === 'online',
      () => `tab 2 to take over (status: ${JSON.stringify(store.status())})`,
    );
    await window.helpers.waitFor(() => store.status().pending === 0, 'the queue to drain');
    return store.list('task', (_, key) => key.startsWith('q')).map((e) => [e.key, e.version, e.pending]);
  });
  assert.deepEqual(after, [
    ['q1', 1, false],
    ['q2', 1, false],
    ['q3', 1, false],
  ]);
  const server = await tc.serverSnapshot();
  for (const n of [1, 2, 3]) {
    assert.deepEqual(server.entries[`task/q${n}`], {
      kind: 'task',
      key: `q${n}`,
      value: { title: `queued ${n}` },
      version: 1,
      rev: server.entries[`task/q${n}`].rev,
    });
  }
});
