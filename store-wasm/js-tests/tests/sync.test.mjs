// Two browsers (two contexts, so two IndexedDBs) synced through the real
// server: writes travel both ways with the server's versions and revisions.
import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';

const s = suite();

s.test('a write in A reaches B; confirmed() resolves with the ack; status follows', async (tc) => {
  const a = await tc.newPage(null, { label: 'A' });
  const b = await tc.newPage(null, { label: 'B' });
  await tc.open(a, { name: 'sync-a', sync: tc.syncOptions() });
  await tc.open(b, { name: 'sync-b', sync: tc.syncOptions() });
  const statusA0 = await tc.online(a);
  await tc.online(b);
  assert.equal(statusA0.pending, 0);
  assert.equal(statusA0.error, null);
  assert.equal(typeof statusA0.lastSyncedRev, 'number');

  await b.evaluate(() => {
    window.events = [];
    window.store.watch('task', {}, (event, error) => window.events.push(event ?? { error: error?.code }));
  });
  const metrics0 = await tc.server.metrics();

  const fromA = await a.evaluate(async () => {
    const store = window.store;
    const acks = [];
    const own = [];
    store.watch('task', {}, (event) => event && own.push([event.type, event.pending]));
    // The entry as seen at each ack: an ack may arrive before the change
    // batch that holds the write, and the entry must not vanish meanwhile.
    const atAck = [];
    store.on('acked', (ack) => {
      acks.push(ack);
      atAck.push(store.get('task', 'shared') ?? null);
    });
    const write = await store.set('task', 'shared', { title: 'from A' });
    const local = store.get('task', 'shared');
    const ack = await store.confirmed(write.opId);
    const atConfirmed = store.get('task', 'shared') ?? null;
    await window.helpers.waitFor(() => store.status().pending === 0, 'no pending op');
    await window.helpers.waitFor(() => acks.length >= 1, 'the acked event');
    await window.helpers.waitFor(() => store.status().lastSyncedRev >= ack.rev, 'A to reach the revision of its write');
    return { write, local, ack, acks, atAck, atConfirmed, own, entry: store.get('task', 'shared'), status: store.status() };
  });
  assert.equal(fromA.write.result, 'created');
  assert.equal(fromA.write.version, 1);
  assert.equal(typeof fromA.write.opId, 'string');
  assert.ok(fromA.write.opId.length > 0);
  assert.deepEqual(fromA.local.value, { title: 'from A' }, 'the write is visible locally before the ack');
  assert.deepEqual(
    { opId: fromA.ack.opId, result: fromA.ack.result, version: fromA.ack.version },
    { opId: fromA.write.opId, result: 'created', version: 1 },
  );
  assert.ok(fromA.ack.rev > statusA0.lastSyncedRev, 'the ack carries the server revision of the change');
  assert.deepEqual(fromA.acks.map((x) => x.opId), [fromA.write.opId]);
  assert.deepEqual(
    fromA.atAck.map((e) => e && e.value),
    [{ title: 'from A' }],
    'the entry is there when the acked event fires',
  );
  assert.deepEqual(fromA.atConfirmed?.value, { title: 'from A' }, 'the entry is there when confirmed() resolves');
  assert.deepEqual(fromA.own[0], ['create', true], "A's watch sees its write at once, pending");
  assert.ok(
    fromA.own.every(([type]) => type !== 'delete'),
    `A's own write never disappears from its watch: ${JSON.stringify(fromA.own)}`,
  );
  assert.equal(fromA.entry.pending, false);
  assert.equal(fromA.entry.version, fromA.ack.version);
  assert.equal(fromA.status.connection, 'online');
  assert.equal(fromA.status.pending, 0);
  assert.ok(fromA.status.lastSyncedRev >= fromA.ack.rev, 'lastSyncedRev advanced past the write');

  // The server holds it, at the version and revision of the ack.
  const server = await tc.serverSnapshot();
  assert.deepEqual(server.entries['task/shared'], {
    kind: 'task',
    key: 'shared',
    value: { title: 'from A' },
    version: fromA.ack.version,
    rev: fromA.ack.rev,
  });
  const metrics1 = await tc.server.metrics();
  assert.equal(metrics1.zestor_ops_acked_total - metrics0.zestor_ops_acked_total, 1);

  // B sees it as a watch event with the server's version, and in its reads.
  const atB = await b.evaluate(async (rev) => {
    const store = window.store;
    await window.helpers.waitFor(() => window.events.length >= 1, 'the event at B');
    await window.helpers.waitFor(() => store.status().lastSyncedRev >= rev, 'B to reach the server revision');
    return { events: window.events, entry: store.get('task', 'shared'), status: store.status(), rev: store.rev() };
  }, fromA.ack.rev);
  assert.equal(atB.events.length, 1);
  const event = atB.events[0];
  assert.deepEqual(
    [event.kind, event.key, event.type, event.value, event.version, event.pending],
    ['task', 'shared', 'create', { title: 'from A' }, fromA.ack.version, false],
  );
  assert.equal(event.rev, atB.rev, "the event's rev is B's store revision");
  assert.deepEqual(atB.entry, { value: { title: 'from A' }, version: 1, rev: event.rev, pending: false });
  assert.equal(atB.status.connection, 'online');
  assert.equal(atB.status.pending, 0);

  // And back: B updates, A sees version 2.
  await a.evaluate(() => {
    window.events = [];
    window.store.watch('task', {}, (event) => event && window.events.push(event));
  });
  const fromB = await b.evaluate(async () => {
    const write = await window.store.set('task', 'shared', { title: 'from B' });
    return { write, ack: await window.store.confirmed(write.opId) };
  });
  assert.equal(fromB.write.result, 'updated');
  assert.deepEqual([fromB.ack.result, fromB.ack.version], ['updated', 2]);
  assert.ok(fromB.ack.rev > fromA.ack.rev);
  const atA = await a.evaluate(async (rev) => {
    await window.helpers.waitFor(() => window.events.length >= 1, 'the event at A');
    await window.helpers.waitFor(() => window.store.status().lastSyncedRev >= rev, 'A to reach the server revision');
    return { events: window.events, entry: window.store.get('task', 'shared') };
  }, fromB.ack.rev);
  assert.deepEqual(
    atA.events.map((e) => [e.type, e.value, e.version, e.pending]),
    [['update', { title: 'from B' }, 2, false]],
  );
  assert.deepEqual([atA.entry.value, atA.entry.version, atA.entry.pending], [{ title: 'from B' }, 2, false]);
});

s.test('deletes and setMany sync too; a new client starts from the server state', async (tc) => {
  const a = await tc.newPage(null, { label: 'A' });
  await tc.open(a, { name: 'sync-many', sync: tc.syncOptions() });
  await tc.online(a);
  const written = await a.evaluate(async () => {
    const store = window.store;
    const many = await store.setMany('task', { m1: { title: 'one' }, m2: { title: 'two' }, m3: { title: 'three' } });
    const gone = await store.delete('task', 'm2');
    const acks = await Promise.all([...many.map((w) => w.opId), gone.opId].map((id) => store.confirmed(id)));
    return { many, gone, acks };
  });
  assert.deepEqual(written.many.map((w) => w.key), ['m1', 'm2', 'm3']);
  assert.ok(written.many.every((w) => typeof w.opId === 'string'));
  assert.deepEqual(written.acks.map((x) => x.result), ['created', 'created', 'created', 'deleted']);

  // A fresh client: from the moment its status says it is synced to a
  // server revision, its reads show the server's state at that revision.
  const server = await tc.serverSnapshot();
  const c = await tc.newPage(null, { label: 'C' });
  const samples = await c.evaluate(async ([sync, serverRev]) => {
    const z = await window.zestorReady;
    const store = await z.open({ name: 'sync-fresh', sync });
    window.store = store;
    const seen = [];
    const start = performance.now();
    for (;;) {
      const status = store.status();
      const sample = `lastSyncedRev ${status.lastSyncedRev}: keys ${JSON.stringify(store.keys('task'))}`;
      if (seen.at(-1) !== sample) seen.push(sample);
      if (status.lastSyncedRev !== null && status.lastSyncedRev >= serverRev) break;
      if (performance.now() - start > 15000) throw new Error(`C did not sync: ${seen.join(' / ')}`);
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    return seen;
  }, [tc.syncOptions(), server.rev]);
  const expectedKeys = Object.values(server.entries)
    .filter((e) => e.kind === 'task')
    .map((e) => e.key)
    .sort();
  assert.equal(samples.at(-1), `lastSyncedRev ${server.rev}: keys ${JSON.stringify(expectedKeys)}`, samples.join('\n'));
  await tc.online(c);
  const atC = await c.evaluate(() => ({
    m1: window.store.get('task', 'm1') ?? null,
    m2: window.store.get('task', 'm2') ?? null,
    m3: window.store.get('task', 'm3') ?? null,
    lastSyncedRev: window.store.status().lastSyncedRev,
  }));
  assert.deepEqual(
    [atC.m1, atC.m2, atC.m3].map((e) => e && [e.value, e.version, e.pending]),
    [[{ title: 'one' }, 1, false], null, [{ title: 'three' }, 1, false]],
  );
  assert.equal(atC.lastSyncedRev, server.rev);
});
