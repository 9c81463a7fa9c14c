// The browser benchmarks of the zestor package: each workload times the
// package and its baselines (raw IndexedDB, Dexie) in this page, in
// rounds whose order rotates, so page warm-up and drift hit every side alike.
// Every function returns plain JSON: per-round figures, which `run.mjs`
// turns into medians, ratios and goal verdicts.
//
// Served by the sync-server's static dir: the package at /pkg/, Dexie's ESM
// build at /dexie.mjs.

import { init, open, deleteStore } from '/pkg/url.js';
import Dexie from '/dexie.mjs';

export const ready = Promise.all([init(), fetch('/pkg/package.json').then((res) => res.json())]).then(([, pkg]) => ({
  version: pkg.version,
  dexie: Dexie.semVer,
}));

/** Sizes of every workload; `quick` proves the suite works in seconds. */
export function config({ quick = false, server = null } = {}) {
  const q = quick;
  return {
    quick: q,
    server: server ?? {
      url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/sync`,
      namespace: 't',
      token: 'rw-token',
    },
    batched: { n: q ? 2_000 : 30_000, batch: 1_000, rounds: q ? 2 : 5 },
    single: { m: q ? 50 : 500, rounds: q ? 2 : 5 },
    reads: { keys: q ? 1_000 : 10_000, gets: q ? 5_000 : 100_000, asyncGets: q ? 500 : 3_000, scans: q ? 3 : 10, rounds: q ? 2 : 5 },
    watch: { watchers: 100, writes: q ? 30 : 400, warmup: q ? 5 : 20, rounds: q ? 2 : 4 },
    sync: { n: q ? 2_000 : 100_000, batch: 1_000, rounds: q ? 1 : 3 },
    writePath: { single: q ? 30 : 400, block: q ? 10 : 25, batches: q ? 3 : 12 },
  };
}

// ---------------------------------------------------------------- helpers

const now = () => performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const KIND = 'task';
const key = (i) => `k${String(i).padStart(6, '0')}`;
const value = (i) => ({ title: `task ${i}`, done: i % 2 === 0, n: i });
let nameCounter = 0;
const runId = Math.random().toString(36).slice(2, 8);
const freshName = (prefix) => `bench-${prefix}-${runId}-${++nameCounter}`;
let sink = 0; // results fold into it so no loop is optimised away
let profiling = false;

/** With `on`, every side of every round runs inside console.profile()/profileEnd(). */
export function setProfiling(on) {
  profiling = on;
}

/** The order of the sides in round `r`: rotated each round. */
function rotation(sides, r) {
  const k = r % sides.length;
  return [...sides.slice(k), ...sides.slice(0, k)];
}

/** A small deterministic PRNG (mulberry32), for the random read keys. */
function prng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** `n` items in batches of `size`: `[[key, value], …]` per batch, plus the keys and values apart (for Dexie). */
function batches(n, size, offset = 0) {
  const out = [];
  for (let start = 0; start < n; start += size) {
    const pairs = [];
    for (let i = start; i < Math.min(n, start + size); i++) pairs.push([key(offset + i), value(offset + i)]);
    out.push({ pairs, keys: pairs.map((p) => p[0]), values: pairs.map((p) => p[1]) });
  }
  return out;
}

// Raw IndexedDB: one object store `task`, out-of-line string keys, the
// browser's default durability (what the package uses).

function idbRequest(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function txDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
    tx.onerror = () => reject(tx.error ?? new Error('transaction failed'));
  });
}

async function rawOpen(name) {
  const request = indexedDB.open(name, 1);
  request.onupgradeneeded = () => request.result.createObjectStore(KIND);
  return idbRequest(request);
}

async function rawDelete(db, name) {
  db?.close();
  await idbRequest(indexedDB.deleteDatabase(name));
}

async function rawPutBatches(db, list) {
  for (const b of list) {
    const tx = db.transaction(KIND, 'readwrite');
    const os = tx.objectStore(KIND);
    for (const [k, v] of b.pairs) os.put(v, k);
    await txDone(tx);
  }
}

async function rawCount(db) {
  const tx = db.transaction(KIND, 'readonly');
  return idbRequest(tx.objectStore(KIND).count());
}

// Raw IndexedDB in the package's own layout (the diagnostic side `rawShape`):
// stores `entries` (key [kind, key], the entry as a JSON string
// `{value, version, rev}`) and `meta` (the head revision, written by every
// transaction), both in each readwrite transaction, as a local store does.

async function shapeOpen(name) {
  const request = indexedDB.open(name, 1);
  request.onupgradeneeded = () => {
    request.result.createObjectStore('entries');
    request.result.createObjectStore('meta');
  };
  return idbRequest(request);
}

/** Writes `pairs` as the package would, in one transaction; returns the next revision. */
function shapeWrite(db, pairs, rev) {
  const tx = db.transaction(['entries', 'meta'], 'readwrite');
  const entries = tx.objectStore('entries');
  for (const [k, v] of pairs) entries.put(JSON.stringify({ value: v, version: 1, rev: ++rev }), [KIND, k]);
  tx.objectStore('meta').put(String(rev), 'head');
  return [txDone(tx), rev];
}

async function dexieOpen(name) {
  const db = new Dexie(name);
  db.version(1).stores({ [KIND]: '' });
  await db.open();
  return db;
}

async function dexieDelete(db, name) {
  if (db) await db.delete(); // closes it first
  else await Dexie.delete(name);
}

async function oursDelete(store, name) {
  await store?.close();
  await deleteStore(name);
}

// ---------------------------------------------------------------- workloads

/**
 * 1. Batched writes of `n` new small objects in batches of `batch`: ours
 * `setMany` (local store) vs raw IndexedDB (a readwrite transaction per batch,
 * `put` each, await `complete`) vs Dexie `bulkPut`. Writes/s per round.
 */
export async function batched({ n, batch, rounds }, log = () => {}) {
  const list = batches(n, batch);
  const sides = {
    ours: async () => {
      const name = freshName('batched-ours');
      const store = await open({ name });
      const t0 = now();
      for (const b of list) await store.setMany(KIND, b.pairs);
      const ms = now() - t0;
      if (store.count(KIND) !== n) throw new Error(`ours holds ${store.count(KIND)} of ${n}`);
      await oursDelete(store, name);
      return ms;
    },
    raw: async () => {
      const name = freshName('batched-raw');
      const db = await rawOpen(name);
      const t0 = now();
      await rawPutBatches(db, list);
      const ms = now() - t0;
      if ((await rawCount(db)) !== n) throw new Error('raw lost writes');
      await rawDelete(db, name);
      return ms;
    },
    rawShape: async () => {
      const name = freshName('batched-shape');
      const db = await shapeOpen(name);
      let rev = 0;
      const t0 = now();
      for (const b of list) {
        const [done, next] = shapeWrite(db, b.pairs, rev);
        rev = next;
        await done;
      }
      const ms = now() - t0;
      await rawDelete(db, name);
      return ms;
    },
    dexie: async () => {
      const name = freshName('batched-dexie');
      const db = await dexieOpen(name);
      const t0 = now();
      for (const b of list) await db.table(KIND).bulkPut(b.values, b.keys);
      const ms = now() - t0;
      if ((await db.table(KIND).count()) !== n) throw new Error('dexie lost writes');
      await dexieDelete(db, name);
      return ms;
    },
  };
  return runRounds('batched', sides, rounds, (ms) => ({ ms, perSec: (n / ms) * 1000 }), log);
}

/**
 * 2. Single durable writes: `m` sequential awaited writes of new keys: ours
 * `set` vs raw (one `put` per transaction, await `complete`) vs Dexie `put`;
 * and, as a diagnostic, raw with `durability: 'strict'`.
 */
export async function single({ m, rounds }, log = () => {}) {
  const items = Array.from({ length: m }, (_, i) => [key(i), value(i)]);
  const rawSide = (durability) => async () => {
    const name = freshName(`single-raw-${durability}`);
    const db = await rawOpen(name);
    const t0 = now();
    for (const [k, v] of items) {
      const tx = db.transaction(KIND, 'readwrite', { durability });
      tx.objectStore(KIND).put(v, k);
      await txDone(tx);
    }
    const ms = now() - t0;
    await rawDelete(db, name);
    return ms;
  };
  const sides = {
    ours: async () => {
      const name = freshName('single-ours');
      const store = await open({ name });
      const t0 = now();
      for (const [k, v] of items) await store.set(KIND, k, v);
      const ms = now() - t0;
      if (store.count(KIND) !== m) throw new Error('ours lost writes');
      await oursDelete(store, name);
      return ms;
    },
    raw: rawSide('default'),
    dexie: async () => {
      const name = freshName('single-dexie');
      const db = await dexieOpen(name);
      const t0 = now();
      for (const [k, v] of items) await db.table(KIND).put(v, k);
      const ms = now() - t0;
      await dexieDelete(db, name);
      return ms;
    },
    rawStrict: rawSide('strict'),
    rawShape: async () => {
      const name = freshName('single-shape');
      const db = await shapeOpen(name);
      let rev = 0;
      const t0 = now();
      for (const pair of items) {
        const [done, next] = shapeWrite(db, [pair], rev);
        rev = next;
        await done;
      }
      const ms = now() - t0;
      await rawDelete(db, name);
      return ms;
    },
  };
  return runRounds('single', sides, rounds, (ms) => ({ ms, perSec: (m / ms) * 1000, usPerWrite: (ms * 1000) / m }), log);
}

/**
 * 3. Reads from `keys` entries: random `get` (ours: synchronous, from
 * memory; Dexie `get` and raw IndexedDB `get` in its own readonly
 * transaction, each awaited), and whole-kind scans (ours `values(kind)`,
 * Dexie `toArray()`, raw `getAll()`).
 */
export async function reads({ keys: k, gets, asyncGets, scans, rounds }, log = () => {}) {
  const list = batches(k, 1_000);
  const names = { ours: freshName('reads-ours'), raw: freshName('reads-raw'), dexie: freshName('reads-dexie') };
  const store = await open({ name: names.ours });
  for (const b of list) await store.setMany(KIND, b.pairs);
  const raw = await rawOpen(names.raw);
  await rawPutBatches(raw, list);
  const dexie = await dexieOpen(names.dexie);
  for (const b of list) await dexie.table(KIND).bulkPut(b.values, b.keys);

  const rand = prng(42);
  const order = Array.from({ length: Math.max(gets, asyncGets) }, () => key(Math.floor(rand() * k)));
  const getSides = {
    ours: (count) => {
      for (let i = 0; i < count; i++) sink += store.get(KIND, order[i]).value.n;
    },
    dexie: async (count) => {
      const table = dexie.table(KIND);
      for (let i = 0; i < count; i++) sink += (await table.get(order[i])).n;
    },
    raw: async (count) => {
      for (let i = 0; i < count; i++) {
        const tx = raw.transaction(KIND, 'readonly');
        sink += (await idbRequest(tx.objectStore(KIND).get(order[i]))).n;
      }
    },
  };
  const scanSides = {
    ours: () => {
      const all = store.values(KIND);
      if (all.length !== k) throw new Error(`values() gave ${all.length} of ${k}`);
      sink += all[all.length - 1].n;
    },
    dexie: async () => {
      const all = await dexie.table(KIND).toArray();
      if (all.length !== k) throw new Error('toArray() lost entries');
      sink += all[all.length - 1].n;
    },
    raw: async () => {
      const tx = raw.transaction(KIND, 'readonly');
      const all = await idbRequest(tx.objectStore(KIND).getAll());
      if (all.length !== k) throw new Error('getAll() lost entries');
      sink += all[all.length - 1].n;
    },
  };
  // Untimed warm-up of every path.
  for (const [side, fn] of Object.entries(getSides)) await fn(Math.min(side === 'ours' ? gets : asyncGets, 1_000));
  for (const fn of Object.values(scanSides)) await fn();

  const get = await runRounds(
    'reads.get',
    Object.fromEntries(
      Object.entries(getSides).map(([side, fn]) => [
        side,
        async () => {
          const count = side === 'ours' ? gets : asyncGets;
          const t0 = now();
          await fn(count);
          return { ms: now() - t0, count };
        },
      ]),
    ),
    rounds,
    ({ ms, count }) => ({ ms, count, perSec: (count / ms) * 1000, usPerGet: (ms * 1000) / count }),
    log,
  );
  const scan = await runRounds(
    'reads.scan',
    Object.fromEntries(
      Object.entries(scanSides).map(([side, fn]) => [
        side,
        async () => {
          const t0 = now();
          for (let i = 0; i < scans; i++) await fn();
          return now() - t0;
        },
      ]),
    ),
    rounds,
    (ms) => ({ ms, scansPerSec: (scans / ms) * 1000, msPerScan: ms / scans, entriesPerSec: ((scans * k) / ms) * 1000 }),
    log,
  );
  await oursDelete(store, names.ours);
  await rawDelete(raw, names.raw);
  await dexieDelete(dexie, names.dexie);
  return { keys: k, get, scan };
}

/**
 * 4. Watch latency: `watchers` subscriptions on the kind of a local store;
 * for each of `writes` sequential `set`s, the time from calling `set` to
 * the last subscriber's callback (and to the first, and to `set`
 * resolving). Baseline: a raw one-put transaction, on `complete` calling
 * `watchers` plain JS callbacks.
 */
export async function watch({ watchers, writes, warmup, rounds }, log = () => {}) {
  const name = freshName('watch-ours');
  const store = await open({ name });
  let expect = null;
  let seen = 0;
  let first = 0;
  let done = null;
  const failures = [];
  const callback = (event, error) => {
    if (error) {
      failures.push(`${error.code}: ${error.message}`);
      return;
    }
    if (event.key !== expect) return;
    seen++;
    if (seen === 1) first = now();
    if (seen === watchers) done(now());
  };
  const stops = [];
  for (let i = 0; i < watchers; i++) stops.push(store.watch(KIND, {}, callback));

  const rawName = freshName('watch-raw');
  const raw = await rawOpen(rawName);
  const listeners = [];
  let rawSeen = 0;
  let rawDone = null;
  for (let i = 0; i < watchers; i++) {
    listeners.push((k) => {
      if (k !== expect) return;
      rawSeen++;
      if (rawSeen === watchers) rawDone(now());
    });
  }

  let counter = 0;
  const oursOnce = async () => {
    const k = key(counter++);
    expect = k;
    seen = 0;
    const all = new Promise((resolve) => (done = resolve));
    const t0 = now();
    const written = store.set(KIND, k, value(counter)).then(() => now());
    const [tLast, tSet] = await Promise.race([
      Promise.all([all, written]),
      sleep(10_000).then(() => {
        throw new Error(`watch: ${seen} of ${watchers} callbacks within 10 s (${failures.join('; ') || 'no watch error'})`);
      }),
    ]);
    return { last: tLast - t0, first: first - t0, set: tSet - t0 };
  };
  const rawOnce = async () => {
    const k = key(counter++);
    expect = k;
    rawSeen = 0;
    const all = new Promise((resolve) => (rawDone = resolve));
    const t0 = now();
    const tx = raw.transaction(KIND, 'readwrite');
    tx.objectStore(KIND).put(value(counter), k);
    await txDone(tx);
    const tSet = now();
    for (const l of listeners) l(k);
    const tLast = await all;
    return { last: tLast - t0, set: tSet - t0 };
  };
  for (let i = 0; i < warmup; i++) {
    await oursOnce();
    await rawOnce();
  }
  const perRound = Math.ceil(writes / rounds);
  const samples = { ours: [], raw: [] };
  const sides = {
    ours: async () => {
      const out = [];
      for (let i = 0; i < perRound; i++) out.push(await oursOnce());
      samples.ours.push(...out);
      return out.length;
    },
    raw: async () => {
      const out = [];
      for (let i = 0; i < perRound; i++) out.push(await rawOnce());
      samples.raw.push(...out);
      return out.length;
    },
  };
  await runRounds('watch', sides, rounds, (count) => ({ count }), log);
  if (failures.length) throw new Error(`a watch ended: ${failures.join('; ')}`);
  for (const stop of stops) stop();
  await oursDelete(store, name);
  await rawDelete(raw, rawName);

  const stats = (list, field) => {
    const xs = list.map((s) => s[field]).sort((a, b) => a - b);
    return { p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs[xs.length - 1], mean: xs.reduce((a, b) => a + b, 0) / xs.length };
  };
  return {
    watchers,
    writes: samples.ours.length,
    ours: { last: stats(samples.ours, 'last'), first: stats(samples.ours, 'first'), set: stats(samples.ours, 'set') },
    raw: { last: stats(samples.raw, 'last'), set: stats(samples.raw, 'set') },
  };
}

/**
 * Seeds the server with `n` entries of kind `task` over the raw protocol:
 * pushes of `batch` ops, a few in flight. Returns the server revision after
 * the last write. Not timed as a workload (reported as information).
 */
export async function seed({ n, batch }, sync, log = () => {}) {
  const t0 = now();
  const ws = new WebSocket(sync.url);
  let acked = 0;
  let lastRev = 0;
  let failure = null;
  let wake = null;
  const waitEvent = () => new Promise((resolve) => (wake = resolve));
  let welcome = false;
  let snapshotDone = false;
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === 'welcome') welcome = true;
    else if (f.type === 'snapshot' && f.done) snapshotDone = true;
    else if (f.type === 'ack') {
      acked++;
      lastRev = Math.max(lastRev, f.rev);
    } else if (f.type === 'reject' || f.type === 'error') failure = new Error(`seed: server refused: ${e.data}`);
    wake?.();
  };
  ws.onclose = (e) => {
    if (acked < n) failure ??= new Error(`seed: connection closed (${e.code}) after ${acked} of ${n} acks`);
    wake?.();
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`seed: cannot connect to ${sync.url}`));
  });
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, namespace: sync.namespace, token: sync.token, client_id: `seed-${runId}` }));
  while (!(welcome && snapshotDone) && !failure) await waitEvent();
  const inFlight = 4;
  let sent = 0;
  while (acked < n) {
    if (failure) throw failure;
    while (sent < n && sent - acked < inFlight * batch) {
      const ops = [];
      for (let i = sent; i < Math.min(n, sent + batch); i++) {
        ops.push({ op_id: `seed-${i}`, action: 'set', kind: KIND, key: key(i), value: value(i) });
      }
      ws.send(JSON.stringify({ type: 'push', ops }));
      sent += ops.length;
    }
    await waitEvent();
  }
  ws.close();
  const ms = now() - t0;
  log(`seeded ${n} entries in ${(ms / 1000).toFixed(1)} s (server rev ${lastRev})`);
  return { n, ms, rev: lastRev };
}

/**
 * 5. Initial sync of the `n` entries the server holds into an empty store:
 * from `open` with sync until the store holds them all and
 * `status().lastSyncedRev` reached `rev`. Baseline: raw IndexedDB writing
 * the same `n` entries in transactions of `batch` puts.
 */
export async function initialSync({ n, batch, rounds }, sync, rev, log = () => {}) {
  const list = batches(n, batch);
  const sides = {
    ours: async () => {
      const name = freshName('sync-ours');
      const marks = {};
      const t0 = now();
      // Milestones (cheap hooks: a listener on the socket, IndexedDB
      // transactions timestamped, puts not wrapped).
      const socket = instrumentWebSocket(t0, marks);
      const idb = instrumentIdb({ puts: false });
      let store;
      try {
        store = await open({ name, sync: { url: sync.url, namespace: sync.namespace, token: sync.token } });
      } finally {
        socket.restore();
      }
      marks.open = now() - t0;
      const unsubscribe = store.on('status', (s) => {
        if (s.connection === 'online' && marks.online === undefined) marks.online = now() - t0;
      });
      const deadline = t0 + 240_000;
      for (;;) {
        const count = store.count(KIND);
        if (count > 0 && marks.firstEntries === undefined) marks.firstEntries = now() - t0;
        const status = store.status();
        if (count === n && status.lastSyncedRev !== null && status.lastSyncedRev >= rev) break;
        if (status.error) throw new Error(`sync failed: ${status.error.code}: ${status.error.message}`);
        if (now() > deadline) throw new Error(`sync: ${count} of ${n} entries, lastSyncedRev ${status.lastSyncedRev} of ${rev} after 240 s`);
        await sleep(2);
      }
      const ms = now() - t0;
      idb.restore();
      unsubscribe();
      // The transaction that persisted the snapshot: the longest.
      const txs = idb.records.filter((r) => r.complete > 0);
      const big = txs.reduce((a, b) => (b.complete - b.created > a.complete - a.created ? b : a), txs[0]);
      if (big) {
        marks.snapshotTxCreated = big.created - t0;
        marks.snapshotTxComplete = big.complete - t0;
      }
      marks.readwriteTransactions = idb.records.length;
      Object.assign(marks, socket.stats);
      await oursDelete(store, name);
      return { ms, marks };
    },
    raw: async () => {
      const name = freshName('sync-raw');
      const db = await rawOpen(name);
      const t0 = now();
      await rawPutBatches(db, list);
      const ms = now() - t0;
      await rawDelete(db, name);
      return { ms };
    },
  };
  return runRounds('sync', sides, rounds, ({ ms, marks }) => ({ ms, perSec: (n / ms) * 1000, ...(marks ? { marks } : {}) }), log);
}

/**
 * Wraps IndexedDB's `transaction` and `put` to timestamp, per readwrite
 * transaction: its creation, its puts and its `complete` event (a listener
 * added at creation, so it runs before the package's own `oncomplete`).
 */
function instrumentIdb({ puts = true } = {}) {
  const records = [];
  const byTx = new WeakMap();
  const { transaction } = IDBDatabase.prototype;
  const { put } = IDBObjectStore.prototype;
  IDBDatabase.prototype.transaction = function (...args) {
    const created = now();
    const tx = transaction.apply(this, args);
    if (args[1] === 'readwrite') {
      const rec = { created, issued: 0, puts: 0, complete: 0 };
      tx.addEventListener('complete', () => (rec.complete = now()));
      byTx.set(tx, rec);
      records.push(rec);
    }
    return tx;
  };
  if (puts) IDBObjectStore.prototype.put = function (...args) {
    const request = put.apply(this, args);
    const rec = byTx.get(this.transaction);
    if (rec) {
      rec.puts++;
      rec.issued = now();
    }
    return request;
  };
  return {
    records,
    restore() {
      IDBDatabase.prototype.transaction = transaction;
      IDBObjectStore.prototype.put = put;
    },
  };
}

/**
 * Where a write's time goes (diagnostic): awaited `set`s and awaited
 * `setMany`s of 1,000, with IndexedDB instrumented, against raw IndexedDB
 * (plain, and in the package's layout), the sides alternating in blocks
 * (`single` writes in blocks of `block`; `batches` batches, one per block)
 * so drift hits them alike. Mean ms per write (per batch for setMany) of
 * each segment: `call` (until the call returns its promise: argument
 * conversion), `stage` (until the package opens its transaction: queueing,
 * staging in the engine, JSON encoding), `issue` (opening the transaction
 * and issuing its puts), `commit` (until `complete`: IndexedDB's work, in
 * the browser process), `reply` (from `complete` until the caller's `await`
 * resumes: committing the engine, answering, the promise).
 */
export async function writePath({ single: m, block = 25, batches: k }, log = () => {}) {
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const summarize = (samples) => {
    const out = {};
    for (const field of Object.keys(samples[0])) out[field] = mean(samples.map((x) => x[field]));
    return out;
  };
  const probe = instrumentIdb();
  const timed = async (write, samples) => {
    const before = probe.records.length;
    const t0 = now();
    const promise = write();
    const returned = now();
    await promise;
    const resumed = now();
    const recs = probe.records.slice(before);
    if (recs.length !== 1) throw new Error(`writePath: ${recs.length} readwrite transactions for one write`);
    const [r] = recs;
    // Raw IndexedDB opens its transaction and issues its puts inside the
    // call; the package returns first and does both later.
    samples.push({
      call: Math.min(returned, r.created) - t0,
      stage: Math.max(0, r.created - returned),
      issue: r.issued - r.created,
      commit: r.complete - r.issued,
      reply: resumed - r.complete,
      total: resumed - t0,
      puts: r.puts,
    });
  };
  const names = { ours: freshName('path-ours'), raw: freshName('path-raw'), shape: freshName('path-shape') };
  const store = await open({ name: names.ours });
  const raw = await rawOpen(names.raw);
  const shape = await shapeOpen(names.shape);
  let rev = 0;
  const writers = {
    ours: (pairs) => (pairs.length === 1 ? store.set(KIND, pairs[0][0], pairs[0][1]) : store.setMany(KIND, pairs)),
    raw: (pairs) => {
      const tx = raw.transaction(KIND, 'readwrite');
      const os = tx.objectStore(KIND);
      for (const [k, v] of pairs) os.put(v, k);
      return txDone(tx);
    },
    rawShape: (pairs) => {
      const [done, next] = shapeWrite(shape, pairs, rev);
      rev = next;
      return done;
    },
  };
  const sides = Object.keys(writers);
  const out = { single: {}, batch: {} };
  try {
    // Untimed warm-up, then the blocks.
    for (const side of sides) for (let i = 0; i < 10; i++) await writers[side]([[key(900_000 + i), value(i)]]);
    const single = Object.fromEntries(sides.map((x) => [x, []]));
    let next = 0;
    for (let b = 0; b * block < m; b++) {
      for (const side of rotation(sides, b)) {
        for (let i = 0; i < block; i++) {
          const j = next + i;
          await timed(() => writers[side]([[key(j), value(j)]]), single[side]);
        }
      }
      next += block;
    }
    const list = batches(k * 1_000, 1_000, 100_000);
    const batch = Object.fromEntries(sides.map((x) => [x, []]));
    for (let b = 0; b < k; b++) {
      for (const side of rotation(sides, b)) await timed(() => writers[side](list[b].pairs), batch[side]);
    }
    for (const side of sides) {
      out.single[side] = summarize(single[side]);
      out.batch[side] = summarize(batch[side]);
    }
  } finally {
    probe.restore();
  }
  await oursDelete(store, names.ours);
  await rawDelete(raw, names.raw);
  await rawDelete(shape, names.shape);
  log(`writePath: set ${out.single.ours.total.toFixed(3)} ms (raw ${out.single.raw.total.toFixed(3)}), setMany ${out.batch.ours.total.toFixed(1)} ms (raw ${out.batch.raw.total.toFixed(1)})`);
  return out;
}

/**
 * Replaces `WebSocket` until `restore()` with a subclass that timestamps the
 * socket's opening, its first frame and the last part of a snapshot, and
 * counts frames and characters received.
 */
function instrumentWebSocket(t0, marks) {
  const Original = globalThis.WebSocket;
  const stats = { frames: 0, chars: 0, snapshotParts: 0 };
  globalThis.WebSocket = class extends Original {
    constructor(...args) {
      super(...args);
      marks.socketCreated ??= now() - t0;
      this.addEventListener('open', () => (marks.socketOpen ??= now() - t0));
      this.addEventListener('message', (e) => {
        const t = now() - t0;
        const data = typeof e.data === 'string' ? e.data : '';
        stats.frames++;
        stats.chars += data.length;
        marks.firstFrame ??= t;
        // Fields serialize in order: type, rev, reason, entries, done.
        if (data.startsWith('{"type":"snapshot"')) {
          stats.snapshotParts++;
          if (data.endsWith('"done":true}')) marks.snapshotReceived ??= t;
        }
      });
    }
  };
  return {
    stats,
    restore() {
      globalThis.WebSocket = Original;
    },
  };
}

/**
 * Runs `rounds` rounds of every side, the order rotated each round;
 * `figures(result)` turns a side's result into its figures for the round.
 */
async function runRounds(label, sides, rounds, figures, log) {
  const names = Object.keys(sides);
  const out = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    const parts = [];
    for (const side of rotation(names, r)) {
      // run.mjs --profile collects these as CPU profiles (CDP Profiler).
      if (profiling) console.profile(`${label}:${side}:${r}`);
      const raw = await sides[side]();
      if (profiling) console.profileEnd(`${label}:${side}:${r}`);
      const result = figures(raw);
      result.order = parts.length;
      out[side].push(result);
      parts.push(`${side} ${result.ms !== undefined ? `${result.ms.toFixed(0)} ms` : ''}`.trim());
    }
    log(`${label}: round ${r + 1}/${rounds}: ${parts.join(', ')}`);
  }
  return out;
}

/** Every workload in turn, as `run.mjs` runs them (for a page opened by hand). */
export async function runAll(cfg, log = console.log) {
  const info = await ready;
  const results = { info: { ...info, userAgent: navigator.userAgent, config: cfg } };
  results.batched = await batched(cfg.batched, log);
  results.single = await single(cfg.single, log);
  results.writePath = await writePath(cfg.writePath, log);
  results.reads = await reads(cfg.reads, log);
  results.watch = await watch(cfg.watch, log);
  results.seed = await seed(cfg.sync, cfg.server, log);
  results.sync = await initialSync(cfg.sync, cfg.server, results.seed.rev, log);
  results.sink = sink;
  return results;
}
