// zestor/react: React hooks over a store, on useSyncExternalStore.
//
// The hooks of one store share one watch per kind they read, one `acked`
// and `rejected` listener and one `status` listener. A change of
// `kind`/`key` wakes only the hooks that read that key (useEntry) or that
// kind (useList), once per microtask however many changes came (a
// `setMany`, a reconnect's catch-up). A hook's snapshot keeps its identity
// while what it shows is unchanged (same version, revision and pending
// state), so React skips the re-render; a list keeps the identity of each
// row that did not change, so rows wrapped in React.memo re-render alone.
//
// A store that closes leaves the hooks showing what they last read. A hook
// given no store (`null`, while one is being opened) shows nothing, and so
// does server rendering (getServerSnapshot).

import { useCallback, useDebugValue, useRef, useSyncExternalStore } from 'react';

/** What the hooks show without a store, and on the server. */
const EMPTY = Object.freeze([]);
const NO_STATUS = Object.freeze({
  connection: 'connecting',
  pending: 0,
  lastSyncedRev: null,
  leader: false,
  rights: null,
  error: null,
});
const noEntry = () => undefined;
const noList = () => EMPTY;
const noStatus = () => NO_STATUS;
const unsubscribed = () => () => {};

/** Per store: its kind feeds, its op listener and its status topic. */
const hubs = new WeakMap();

function hubOf(store) {
  let hub = hubs.get(store);
  if (!hub) {
    hub = new Hub(store);
    hubs.set(store, hub);
  }
  return hub;
}

class Hub {
  constructor(store) {
    this.store = store;
    this.kinds = new Map();
    this.status = new StatusTopic(store);
    this.active = 0;
    this.stopOps = null;
  }

  feed(kind) {
    let feed = this.kinds.get(kind);
    if (!feed) {
      feed = new KindFeed(this, kind);
      this.kinds.set(kind, feed);
    }
    return feed;
  }

  /** A feed started: acks and rejections (an ack clears `pending` without a watch event) go to the feeds of their kind. */
  started() {
    if (this.active++ > 0) return;
    const onOp = (op) => this.kinds.get(op.kind)?.changed(op.key);
    const offAcked = this.store.on('acked', onOp);
    const offRejected = this.store.on('rejected', onOp);
    this.stopOps = () => {
      offAcked();
      offRejected();
    };
  }

  stopped() {
    if (--this.active > 0) return;
    this.stopOps?.();
    this.stopOps = null;
  }
}

/**
 * The changes of one kind, while some hook listens, through one store
 * watch. `epoch` counts the kind's changes; `epochOf(key)` is the last one
 * of a key some hook reads (a hook that subscribes later reads its key
 * afresh). Epochs move at once, so a render reads fresh data; the hooks
 * are told once per microtask.
 */
class KindFeed {
  constructor(hub, kind) {
    this.hub = hub;
    this.store = hub.store;
    this.kind = kind;
    this.epoch = 0;
    this.keyEpochs = new Map();
    this.byKey = new Map();
    this.everyKey = new Set();
    this.listeners = 0;
    this.stopWatch = null;
    this.dirty = new Set();
    this.dirtyAll = false;
    this.scheduled = false;
  }

  /** Calls `fn` after changes of `key` (`null`: of any key); returns the unsubscribe function. */
  subscribe(key, fn) {
    let set = this.everyKey;
    if (key !== null) {
      set = this.byKey.get(key);
      if (!set) this.byKey.set(key, (set = new Set()));
    }
    set.add(fn);
    if (this.listeners++ === 0) {
      this.hub.started();
      this.watch();
    }
    return () => {
      if (!set.delete(fn)) return;
      if (key !== null && set.size === 0) {
        this.byKey.delete(key);
        this.keyEpochs.delete(key);
      }
      if (--this.listeners === 0) {
        this.stopWatch?.();
        this.stopWatch = null;
        this.hub.stopped();
      }
    };
  }

  epochOf(key) {
    return this.keyEpochs.get(key) ?? 0;
  }

  watch() {
    // A stopped watch may still deliver what it had buffered: only the
    // current one counts.
    const token = {};
    this.current = token;
    const stop = this.store.watch(this.kind, {}, (event, error) => {
      if (this.current !== token) return;
      if (event) {
        this.changed(event.key);
      } else if (error?.code === 'overflow') {
        // This feed fell behind, so anything may have changed: watch again
        // from now and let every hook re-read. Any other end (`closed`)
        // leaves the hooks showing what they last read.
        this.watch();
        this.changedAll();
      }
    });
    this.stopWatch = () => {
      this.current = null;
      stop();
    };
  }

  changed(key) {
    const epoch = ++this.epoch;
    if (this.byKey.has(key)) {
      this.keyEpochs.set(key, epoch);
      this.dirty.add(key);
    }
    this.notify();
  }

  changedAll() {
    const epoch = ++this.epoch;
    for (const key of this.byKey.keys()) this.keyEpochs.set(key, epoch);
    this.dirtyAll = true;
    this.notify();
  }

  notify() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      const fns = new Set(this.everyKey);
      const keys = this.dirtyAll ? [...this.byKey.keys()] : this.dirty;
      for (const key of keys) for (const fn of this.byKey.get(key) ?? []) fns.add(fn);
      this.dirty = new Set();
      this.dirtyAll = false;
      for (const fn of fns) fn();
    });
  }
}

/** The store's sync status, with one `status` listener shared by every hook. */
class StatusTopic {
  constructor(store) {
    this.store = store;
    this.current = store.status();
    this.listeners = new Set();
    this.stop = null;
  }

  subscribe(fn) {
    this.listeners.add(fn);
    if (!this.stop) {
      this.stop = this.store.on('status', (status) => this.set(status));
      // A change between the first render and now had no listener.
      this.set(this.store.status());
    }
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0 && this.stop) {
        this.stop();
        this.stop = null;
      }
    };
  }

  /** The status; read afresh while no listener keeps it current. */
  snapshot() {
    if (!this.stop) this.set(this.store.status());
    return this.current;
  }

  set(status) {
    if (sameStatus(this.current, status)) return;
    this.current = status;
    for (const fn of [...this.listeners]) fn();
  }
}

function sameStatus(a, b) {
  return (
    a.connection === b.connection &&
    a.pending === b.pending &&
    a.lastSyncedRev === b.lastSyncedRev &&
    a.leader === b.leader &&
    a.rights === b.rights &&
    (a.error === b.error ||
      (a.error !== null && b.error !== null && a.error.code === b.error.code && a.error.message === b.error.message))
  );
}

/** Two reads of one key show the same thing: the value follows from version, revision and pending state. */
function sameEntry(a, b) {
  if (a === undefined || b === undefined) return a === b;
  return a.version === b.version && a.rev === b.rev && a.pending === b.pending;
}

/** `read()`, or `fallback` once the store is closed (the hooks keep showing their last read). */
function unlessClosed(read, fallback) {
  try {
    return read();
  } catch (err) {
    if (err?.code === 'closed') return fallback;
    throw err;
  }
}

/**
 * The entry at `kind`/`key` (`undefined` when there is none), kept current:
 * the component re-renders when that key changes, and only then.
 */
export function useEntry(store, kind, key) {
  const feed = store ? hubOf(store).feed(kind) : null;
  const cache = useRef(null);
  const subscribe = useCallback(
    (onChange) => {
      // Whatever changed before this subscription is read again once; an
      // unchanged entry keeps its identity.
      if (cache.current) cache.current.epoch = -1;
      return feed.subscribe(key, onChange);
    },
    [feed, key],
  );
  const getSnapshot = useCallback(() => {
    const c = cache.current;
    const mine = c !== null && c.feed === feed && c.key === key;
    const epoch = feed.epochOf(key);
    if (mine && c.epoch === epoch) return c.entry;
    const entry = unlessClosed(() => store.get(kind, key), mine ? c.entry : undefined);
    cache.current = { feed, key, epoch, entry: mine && sameEntry(c.entry, entry) ? c.entry : entry };
    return cache.current.entry;
  }, [feed, store, kind, key]);
  const entry = useSyncExternalStore(feed ? subscribe : unsubscribed, feed ? getSnapshot : noEntry, noEntry);
  useDebugValue(entry);
  return entry;
}

/**
 * The entries of `kind` that pass `filter` (all of them without one), sorted
 * by key, kept current: the component re-renders when a change of `kind`
 * changes the list. Rows that did not change keep their identity. `filter`
 * runs again when the kind changes or when it is a new function; give a
 * stable one (`useCallback`) to skip that work on other renders.
 */
export function useList(store, kind, filter) {
  const feed = store ? hubOf(store).feed(kind) : null;
  const cache = useRef(null);
  const subscribe = useCallback(
    (onChange) => {
      if (cache.current) cache.current.epoch = -1;
      return feed.subscribe(null, onChange);
    },
    [feed],
  );
  const getSnapshot = useCallback(() => {
    const c = cache.current;
    const mine = c !== null && c.feed === feed;
    if (mine && c.epoch === feed.epoch && c.filter === filter) return c.list;
    const fresh = unlessClosed(() => store.list(kind, filter), mine ? c.list : EMPTY);
    const list = mine ? reuseRows(c.list, fresh) : fresh;
    cache.current = { feed, epoch: feed.epoch, filter, list };
    return list;
  }, [feed, store, kind, filter]);
  const list = useSyncExternalStore(feed ? subscribe : unsubscribed, feed ? getSnapshot : noList, noList);
  useDebugValue(list, (l) => `${l.length} of ${kind}`);
  return list;
}

/** `fresh` with the rows of `old` that did not change; `old` itself when nothing did. */
function reuseRows(old, fresh) {
  if (old === fresh) return old;
  const byKey = new Map(old.map((row) => [row.key, row]));
  let same = old.length === fresh.length;
  const list = fresh.map((row, i) => {
    const prev = byKey.get(row.key);
    if (prev !== undefined && sameEntry(prev, row)) {
      if (old[i] !== prev) same = false;
      return prev;
    }
    same = false;
    return row;
  });
  return same ? old : list;
}

/** The store's sync status (`store.status()`), kept current. */
export function useSyncStatus(store) {
  const topic = store ? hubOf(store).status : null;
  const subscribe = useCallback((onChange) => topic.subscribe(onChange), [topic]);
  const getSnapshot = useCallback(() => topic.snapshot(), [topic]);
  const status = useSyncExternalStore(topic ? subscribe : unsubscribed, topic ? getSnapshot : noStatus, noStatus);
  useDebugValue(status, (s) => `${s.connection}, ${s.pending} pending`);
  return status;
}
