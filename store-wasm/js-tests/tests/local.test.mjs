// A local store (no sync): reads, writes, errors, and reopening from IndexedDB.
import assert from 'node:assert/strict';
import { TASK_SCHEMA, suite } from '../harness.mjs';

const s = suite();

s.test('reads are synchronous and see every write once it resolves', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const store = await z.open({ name: 'local-reads' });
    const out = {};
    out.emptyGet = store.get('note', 'a') ?? 'undefined';
    out.emptyCount = store.count('note');
    out.emptyRev = store.rev();
    out.b = await store.set('note', 'b', { n: 2 });
    out.a = await store.set('note', 'a', { n: 1 });
    out.same = await store.set('note', 'a', { n: 1 });
    out.other = await store.set('tag', 'x', 'red');
    const get = store.get('note', 'a');
    out.getIsPromise = get instanceof Promise;
    out.get = get;
    out.missing = store.get('note', 'zzz') === undefined;
    out.list = store.list('note');
    out.filtered = store.list('note', (value, key) => value.n > 1 && key === 'b');
    out.count = store.count('note');
    out.keys = store.keys('note');
    out.values = store.values('note');
    out.getAll = store.getAll('note');
    out.kinds = store.kinds();
    out.rev = store.rev();
    out.status = store.status();
    // Members come back in key order, at every depth (README: "Values are JSON").
    await store.set('order', 'o', { z: 1, a: { y: 2, b: 3 } });
    out.order = JSON.stringify(store.get('order', 'o').value);
    await store.close();
    return out;
  });
  assert.equal(got.order, '{"a":{"b":3,"y":2},"z":1}');
  assert.equal(got.emptyGet, 'undefined');
  assert.equal(got.emptyCount, 0);
  assert.equal(got.emptyRev, 0);
  assert.deepEqual(got.b, { result: 'created', version: 1, rev: 1 });
  assert.deepEqual(got.a, { result: 'created', version: 1, rev: 2 });
  // An equal value writes nothing and spends no revision.
  assert.equal(got.same.result, 'unchanged');
  assert.equal(got.same.version, 1);
  assert.equal(got.same.rev, 2);
  assert.equal(got.other.rev, 3);
  assert.equal(got.getIsPromise, false);
  assert.deepEqual(got.get, { value: { n: 1 }, version: 1, rev: 2, pending: false });
  assert.equal(got.missing, true);
  assert.deepEqual(
    got.list.map((e) => [e.key, e.value, e.version, e.rev]),
    [
      ['a', { n: 1 }, 1, 2],
      ['b', { n: 2 }, 1, 1],
    ],
  );
  assert.deepEqual(got.filtered.map((e) => e.key), ['b']);
  assert.equal(got.count, 2);
  assert.deepEqual(got.keys, ['a', 'b']);
  assert.deepEqual(got.values, [{ n: 1 }, { n: 2 }]);
  assert.deepEqual(Object.keys(got.getAll).sort(), ['a', 'b']);
  assert.deepEqual(got.getAll.b.value, { n: 2 });
  assert.equal(got.getAll.b.version, 1);
  assert.deepEqual(got.kinds, ['note', 'tag']);
  assert.equal(got.rev, 3);
  assert.equal(got.status.connection, 'local');
  assert.equal(got.status.pending, 0);
  assert.equal(got.status.lastSyncedRev, null);
});

s.test('setMany, setFn and delete', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const { caught } = window.helpers;
    const store = await z.open({ name: 'local-writes' });
    const out = {};
    await store.set('note', 'keep', { n: 0 });
    out.many = await store.setMany('note', { c: { n: 3 }, a: { n: 1 }, keep: { n: 0 } });
    out.pairs = await store.setMany('note', [['d', { n: 4 }], ['a', { n: 10 }]]);
    out.keysAfterMany = store.keys('note');
    out.fn = await store.setFn('note', 'a', (v) => ({ n: v.n + 1 }));
    out.afterFn = store.get('note', 'a');
    out.fnMissing = await caught(() => store.setFn('note', 'nope', (v) => v));
    out.fnThrows = await caught(() => store.setFn('note', 'a', () => { throw new Error('no thanks'); }));
    out.afterFnThrows = store.get('note', 'a');
    out.del = await store.delete('note', 'c');
    out.afterDel = store.get('note', 'c') ?? 'undefined';
    out.delMissing = await store.delete('note', 'c');
    out.count = store.count('note');
    out.rev = store.rev();
    await store.close();
    return out;
  });
  // Results in key order; an equal value is `unchanged` and spends no revision.
  assert.deepEqual(
    got.many.map((w) => [w.key, w.result, w.version]),
    [
      ['a', 'created', 1],
      ['c', 'created', 1],
      ['keep', 'unchanged', 1],
    ],
  );
  assert.deepEqual(got.many.map((w) => w.rev), [2, 3, 1]);
  assert.deepEqual(
    got.pairs.map((w) => [w.key, w.result, w.version, w.rev]),
    [
      ['a', 'updated', 2, 4],
      ['d', 'created', 1, 5],
    ],
  );
  assert.deepEqual(got.keysAfterMany, ['a', 'c', 'd', 'keep']);
  assert.deepEqual(got.fn, { result: 'updated', version: 3, rev: 6 });
  assert.deepEqual(got.afterFn.value, { n: 11 });
  assert.equal(got.fnMissing.code, 'key_not_found');
  assert.equal(got.fnMissing.isError, true);
  assert.equal(got.fnThrows.code, 'function');
  assert.deepEqual(got.afterFnThrows.value, { n: 11 }, 'a failed setFn writes nothing');
  assert.equal(got.afterFnThrows.version, 3);
  assert.deepEqual(got.del.value, { n: 3 });
  assert.equal(got.del.version, 1);
  assert.equal(got.del.rev, 7);
  assert.equal(got.afterDel, 'undefined');
  assert.equal(got.delMissing, null);
  assert.equal(got.count, 3);
  assert.equal(got.rev, 7);
});

s.test('ifVersion conflicts and validation errors are ZestorErrors with a code', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async (taskSchema) => {
    const z = await window.zestorReady;
    const { caught } = window.helpers;
    const store = await z.open({
      name: 'local-errors',
      schemas: { task: taskSchema },
      validate: { note: (value) => (typeof value.n === 'number' && value.n >= 0) || 'n must be a number >= 0' },
    });
    const out = {};
    out.create0 = await store.set('task', 't1', { title: 'one' }, { ifVersion: 0 });
    out.conflict0 = await caught(() => store.set('task', 't1', { title: 'two' }, { ifVersion: 0 }));
    out.conflictStale = await caught(() => store.set('task', 't1', { title: 'two' }, { ifVersion: 7 }));
    out.cas = await store.set('task', 't1', { title: 'two' }, { ifVersion: 1 });
    out.deleteConflict = await caught(() => store.delete('task', 't1', { ifVersion: 1 }));
    out.fnConflict = await caught(() => store.setFn('task', 't1', (v) => v, { ifVersion: 1 }));
    out.afterConflicts = store.get('task', 't1');
    out.emptyTitle = await caught(() => store.set('task', 't2', { title: '' }));
    out.noTitle = await caught(() => store.set('task', 't2', { name: 'x' }));
    out.manyInvalid = await caught(() => store.setMany('task', { t3: { title: 'ok' }, t4: { title: '' } }));
    out.fnInvalid = await caught(() => store.setFn('task', 't1', () => ({ title: '' })));
    out.validateRefused = await caught(() => store.set('note', 'n1', { n: -1 }));
    out.validateOk = await store.set('note', 'n1', { n: 1 });
    out.kindRequired = await caught(() => store.set('', 'k', 1));
    out.taskKeys = store.keys('task');
    out.rev = store.rev();
    await store.close();
    return out;
  }, TASK_SCHEMA);
  assert.equal(got.create0.result, 'created');
  for (const name of ['conflict0', 'conflictStale', 'deleteConflict', 'fnConflict']) {
    const e = got[name];
    assert.equal(e.isError, true, `${name} is an Error`);
    assert.equal(e.name, 'ZestorError', name);
    assert.equal(e.code, 'conflict', name);
  }
  assert.equal(got.cas.version, 2);
  assert.deepEqual(got.afterConflicts.value, { title: 'two' });
  assert.equal(got.afterConflicts.version, 2);
  for (const name of ['emptyTitle', 'noTitle', 'manyInvalid', 'fnInvalid', 'validateRefused']) {
    const e = got[name];
    assert.equal(e.isError, true, `${name} is an Error`);
    assert.equal(e.name, 'ZestorError', name);
    assert.equal(e.code, 'validation', name);
    assert.ok(e.message.length > 0, `${name} has a message`);
  }
  assert.match(got.validateRefused.message, /n must be a number/);
  assert.equal(got.validateOk.result, 'created');
  assert.equal(got.kindRequired.code, 'kind_required');
  // setMany is all or nothing: t3 was not written either.
  assert.deepEqual(got.taskKeys, ['t1']);
  assert.equal(got.rev, 3);
});

s.test('close, then reopen by name in the same page: the data is restored from IndexedDB', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const { caught } = window.helpers;
    const out = {};
    const first = await z.open({ name: 'local-reopen' });
    await first.set('note', 'a', { n: 1 });
    await first.setMany('note', { b: { n: 2 }, c: { n: 3 } });
    await first.set('note', 'a', { n: 11 });
    await first.delete('note', 'c');
    out.before = { all: first.getAll('note'), rev: first.rev() };
    await first.close();
    await first.close(); // idempotent
    out.getAfterClose = await caught(() => first.get('note', 'a'));
    out.setAfterClose = await caught(() => first.set('note', 'a', { n: 2 }));

    const second = await z.open({ name: 'local-reopen' });
    out.after = { all: second.getAll('note'), rev: second.rev() };
    out.next = await second.set('note', 'd', { n: 4 });
    await second.close();

    const other = await z.open({ name: 'local-reopen-other' });
    out.otherCount = other.count('note');
    await other.close();

    await z.deleteStore('local-reopen');
    const fresh = await z.open({ name: 'local-reopen' });
    out.afterDelete = { count: fresh.count('note'), rev: fresh.rev() };
    await fresh.close();
    return out;
  });
  assert.equal(got.before.rev, 5);
  assert.deepEqual(Object.keys(got.before.all).sort(), ['a', 'b']);
  assert.equal(got.getAfterClose.code, 'closed');
  assert.equal(got.setAfterClose.code, 'closed');
  assert.deepEqual(got.after.all, got.before.all, 'entries, versions and revisions survive close and reopen');
  assert.equal(got.after.rev, 5);
  assert.equal(got.next.rev, 6, 'revisions continue after reopening');
  assert.equal(got.otherCount, 0, 'another name is another store');
  assert.deepEqual(got.afterDelete, { count: 0, rev: 0 });
});
