// A client away for longer than the server's retained history resumes with a
// compacted snapshot: the confirmed state is replaced, and its pending ops
// stay on top and are delivered.
import assert from 'node:assert/strict';
import { NAMESPACE, TOKEN, suite } from '../harness.mjs';

// Retention 1: the SQLite log is trimmed in steps of 256 revisions, so 300
// changes while A is away are past what the server still holds.
const s = suite({ serverArgs: ['--retention', '1'] });

s.test('a compacted cursor takes a snapshot and keeps the pending ops', async (tc) => {
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const proxy = await tc.proxy();
  const a = await tc.newPage(null, { label: 'A' });
  const b = await tc.newPage(null, { label: 'B' });
  await tc.open(a, { name: 'away', sync: tc.syncOptions({ url: proxy.wsUrl, backoffMinMs: 50, backoffMaxMs: 200 }) });
  await tc.open(b, { name: 'busy', sync: tc.syncOptions() });
  await tc.online(a);
  await tc.online(b);
  await b.evaluate(() => window.store.set('task', 'shared', { title: 'before' }));
  await a.evaluate(() =>
    window.helpers.waitFor(() => window.store.get('task', 'shared'), 'the first write at A'),
  );

  proxy.cut();
  const cursorBefore = await a.evaluate(async () => {
    const store = window.store;
    await window.helpers.waitFor(() => store.status().connection !== 'online', 'A to go offline');
    await store.set('task', 'shared', { title: 'from A, offline' });
    await store.set('task', 'only-a', { title: 'A alone' });
    return store.status().lastSyncedRev;
  });
  const bRev = await b.evaluate(async () => {
    const store = window.store;
    const items = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`b${i}`, { title: `b ${i}` }]));
    const results = await store.setMany('task', items);
    const acks = await Promise.all(results.map((r) => store.confirmed(r.opId)));
    return Math.max(...acks.map((x) => x.rev));
  });
  assert.ok(bRev - cursorBefore > 256, 'B wrote past the retained history');
  // What the server answers a client resuming from A's cursor now.
  const answer = await b.evaluate(
    async ([url, namespace, token, since]) => {
      const ws = new WebSocket(url);
      await new Promise((resolve) => (ws.onopen = resolve));
      const first = new Promise((resolve) => {
        ws.onmessage = (e) => {
          const f = JSON.parse(e.data);
          if (f.type === 'snapshot' || f.type === 'changes') resolve(f.type === 'snapshot' ? f.reason : 'changes');
        };
      });
      ws.send(JSON.stringify({ type: 'hello', protocol: 1, namespace, token, client_id: 'probe-resume', since }));
      const reason = await first;
      ws.close();
      return reason;
    },
    [tc.server.wsUrl, NAMESPACE, TOKEN, cursorBefore],
  );
  assert.equal(answer, 'compacted', "the server no longer holds the changes after A's cursor");

  proxy.restore();
  const atA = await a.evaluate(async (bRev) => {
    const store = window.store;
    await window.helpers.waitFor(
      () => store.status().pending === 0 && store.status().lastSyncedRev >= bRev,
      () => `A to sync (status: ${JSON.stringify(store.status())})`,
    );
    return {
      count: store.count('task'),
      shared: store.get('task', 'shared'),
      onlyA: store.get('task', 'only-a'),
      b299: store.get('task', 'b299'),
    };
  }, bRev);
  assert.equal(atA.count, 302, 'shared, only-a and b0..b299');
  assert.deepEqual([atA.shared.value, atA.shared.pending], [{ title: 'from A, offline' }, false]);
  assert.deepEqual([atA.onlyA.value, atA.onlyA.version], [{ title: 'A alone' }, 1]);
  assert.deepEqual(atA.b299.value, { title: 'b 299' });

  const server = await tc.serverSnapshot();
  assert.deepEqual(server.entries['task/shared'].value, { title: 'from A, offline' }, "A's offline write reached the server");
  assert.equal(server.entries['task/shared'].version, 2, 'applied once');
  assert.deepEqual(server.entries['task/only-a'].value, { title: 'A alone' });
});
