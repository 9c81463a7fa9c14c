// The server crashes (SIGKILL) and comes back on the same SQLite file and
// port: clients reconnect by themselves and sync resumes, both ways.
import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';

const s = suite();

s.test('clients reconnect after the server is killed and restarted, and writes sync again', async (tc) => {
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const a = await tc.newPage(null, { label: 'A' });
  const b = await tc.newPage(null, { label: 'B' });
  await tc.open(a, { name: 'restart-a', sync: tc.syncOptions() });
  await tc.open(b, { name: 'restart-b', sync: tc.syncOptions() });
  await tc.online(a);
  await tc.online(b);

  const first = await a.evaluate(async () => {
    const w = await window.store.set('task', 'before', { title: 'before the crash' });
    return window.store.confirmed(w.opId);
  });
  assert.equal(first.version, 1);
  await b.evaluate((rev) => window.helpers.waitFor(() => window.store.status().lastSyncedRev >= rev, 'B to see the first write'), first.rev);

  await tc.server.kill();
  const down = await a.evaluate(async () => {
    const store = window.store;
    await window.helpers.waitFor(() => store.status().connection !== 'online', 'A to notice the server is gone');
    // A write while the server is down stays pending.
    const w = await store.set('task', 'during', { title: 'while down' });
    window.duringAck = window.helpers.settle(store.confirmed(w.opId));
    return { write: w, status: store.status() };
  });
  assert.equal(down.status.pending, 1);
  assert.notEqual(down.status.connection, 'online');
  await b.evaluate(() => window.helpers.waitFor(() => window.store.status().connection !== 'online', 'B to notice the server is gone'));

  await tc.server.start();
  const statusA = await tc.online(a, 'store', 20000);
  const statusB = await tc.online(b, 'store', 20000);
  assert.ok(statusA.lastSyncedRev >= first.rev);
  assert.ok(statusB.lastSyncedRev >= first.rev);

  const during = await a.evaluate(() => window.duringAck);
  assert.equal(during.ok, true, JSON.stringify(during));
  assert.equal(during.value.version, 1);

  await b.evaluate(() => {
    window.events = [];
    window.store.watch('task', {}, (event) => event && window.events.push(event));
  });
  const after = await a.evaluate(async () => {
    const w = await window.store.set('task', 'after', { title: 'after the restart' });
    return window.store.confirmed(w.opId);
  });
  assert.deepEqual([after.result, after.version], ['created', 1]);
  assert.ok(after.rev > during.value.rev);

  const atB = await b.evaluate(async (rev) => {
    const store = window.store;
    await window.helpers.waitFor(() => window.events.some((e) => e.key === 'after'), 'the write after the restart at B');
    await window.helpers.waitFor(() => store.status().lastSyncedRev >= rev, 'B to reach the server revision');
    return {
      events: window.events.map((e) => [e.key, e.type, e.version]),
      before: store.get('task', 'before'),
      during: store.get('task', 'during'),
      after: store.get('task', 'after'),
      status: store.status(),
    };
  }, after.rev);
  assert.deepEqual(atB.events.find((e) => e[0] === 'after'), ['after', 'create', 1]);
  assert.deepEqual([atB.before.value, atB.before.version], [{ title: 'before the crash' }, 1]);
  assert.deepEqual([atB.during.value, atB.during.version], [{ title: 'while down' }, 1]);
  assert.deepEqual([atB.after.value, atB.after.pending], [{ title: 'after the restart' }, false]);
  assert.equal(atB.status.pending, 0);

  // The restarted server's counters start at zero: exactly the two ops since.
  const metrics = await tc.server.metrics();
  assert.equal(metrics.zestor_ops_acked_total, 2);
});

s.test('a graceful stop (SIGTERM, close 1001) is survived the same way', async (tc) => {
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const a = await tc.newPage(null, { label: 'A' });
  await tc.open(a, { name: 'restart-graceful', sync: tc.syncOptions() });
  await tc.online(a);
  await tc.server.stop();
  await a.evaluate(() => window.helpers.waitFor(() => window.store.status().connection !== 'online', 'A to notice the stop'));
  await tc.server.start();
  await tc.online(a, 'store', 20000);
  const ack = await a.evaluate(async () => {
    const w = await window.store.set('task', 'graceful', { title: 'after a graceful stop' });
    return window.store.confirmed(w.opId);
  });
  assert.equal(ack.result, 'created');
  const server = await tc.serverSnapshot();
  assert.deepEqual(server.entries['task/graceful'].value, { title: 'after a graceful stop' });
});
