// zestor/react: React hooks over a store, on useSyncExternalStore.
//
// Each store gets one watch per kind that hooks read, shared by every hook
// of that kind, and one `acked`/`rejected`/`status` subscription; a change
// of `kind`/`key` wakes only the hooks that read that key (useEntry) or that
// kind (useList). A hook's snapshot keeps its identity while what it shows
// is unchanged (same version, revision and pending state), so React skips
// the re-render; a list keeps the identity of each row that did not change,
// so rows wrapped in React.memo re-render alone.

import { useCallback, useDebugValue, useRef, useSyncExternalStore } from 'react';

/** Per store: its kind feeds and its status topic. */
const hubs = new WeakMap();

function hubOf(store) {
  let hub = hubs.get(store);
  if (!hub) {
    hub = { kinds: new Map(), status: new StatusTopic(store) };
    hubs.set(store, hub);
  }
  return hub;
}

function feedOf(store, kind) {
  const kinds = hubOf(store).kinds;
  let feed = kinds.get(kind);
  if (!feed) {
    feed = new KindFeed(store, kind);
    kinds.set(kind, feed);
  }
  return feed;
}

/**
 * The changes of one kind, while some hook listens: one store watch, plus
 * acks and rejections (an ack clears `pending` without a watch event).
 * `epoch` counts the kind's changes; `epochOf(key)` is the last one of a key
 * some hook reads (a hook that subscribes later reads its key afresh).
 */
class KindFeed {
  constructor(store, kind) {
    this.store = store;
    this.kind = kind;
    this.epoch = 0;
    this.keyEpochs = new Map();
    this.byKey = new Map();
    this.everyKey = new Set();
    this.listeners = 0;
    this.stops = [];
  }

  /** Calls `fn` on each change of `key` (`null`: of any key); returns the unsubscribe function. */
  subscribe(key, fn) {
    let set = this.everyKey;
    if (key !== null) {
      set = this.byKey.get(key);
      if (!set) this.byKey.set(key, (set = new Set()));
    }
    set.add(fn);
    if (this.listeners++ === 0) this.start();
    return () => {
      set.delete(fn);
      if (key !== null && set.size === 0) {
        this.byKey.delete(key);
        this.keyEpochs.delete(key);
      }
      if (--this.listeners === 0) this.stop();
    };
  }

  epochOf(key) {
    return this.keyEpochs.get(key) ?? 0;
  }

  start() {
    const onOp = (op) => {
      if (op.kind === this.kind) this.changed(op.key);
    };
    this.stops = [this.store.on('acked', onOp), this.store.on('rejected', onOp)];
    this.watch();
  }

  watch() {
    const stop = this.store.watch(this.kind, {}, (event, error) => {
      if (event) {
        this.changed(event.key);
        return;
      }
      // The watch ended. `overflow`: this feed fell behind, so anything may
      // have changed; watch again from now and let every hook re-read. Any
      // other end (`closed`) leaves the hooks showing what they last read.
      const i = this.stops.indexOf(stop);
      if (i >= 0) this.stops.splice(i, 1);
      if (error && error.code === 'overflow' && this.listeners > 0) this.watch();
      this.changedAll();
    });
    this.stops.push(stop);
  }

  stop() {
    for (const stop of this.stops.splice(0)) stop();
  }

  changed(key) {
    const epoch = ++this.epoch;
    const listeners = this.byKey.get(key);
    if (listeners) {
      this.keyEpochs.set(key, epoch);
      for (const fn of [...listeners]) fn();
    }
    for (const fn of [...this.everyKey]) fn();
  }

  changedAll() {
    const epoch = ++this.epoch;
    for (const key of this.byKey.keys()) this.keyEpochs.set(key, epoch);
    for (const set of [...this.byKey.values()]) for (const fn of [...set]) fn();
    for (const fn of [...this.everyKey]) fn();
  }
}

/** The store's sync status, with one `status` subscription shared by every hook. */
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

/**
 * The entry at `kind`/`key` (`undefined` when there is none), kept current:
 * the component re-renders when that key changes, and only then.
 */
export function useEntry(store, kind, key) {
  const feed = feedOf(store, kind);
  const cache = useRef(null);
  const subscribe = useCallback(
    (onChange) => {
      // Whatever changed before this subscription is read again once.
      cache.current = null;
      return feed.subscribe(key, onChange);
    },
    [feed, key],
  );
  const getSnapshot = () => {
    const c = cache.current;
    const epoch = feed.epochOf(key);
    if (c !== null && c.store === store && c.kind === kind && c.key === key && c.epoch === epoch) return c.entry;
    const entry = store.get(kind, key);
    const kept = c !== null && c.store === store && c.kind === kind && c.key === key && sameEntry(c.entry, entry);
    cache.current = { store, kind, key, epoch, entry: kept ? c.entry : entry };
    return cache.current.entry;
  };
  const entry = useSyncExternalStore(subscribe, getSnapshot);
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
  const feed = feedOf(store, kind);
  const cache = useRef(null);
  const subscribe = useCallback(
    (onChange) => {
      cache.current = null;
      return feed.subscribe(null, onChange);
    },
    [feed],
  );
  const getSnapshot = () => {
    const c = cache.current;
    if (c !== null && c.feed === feed && c.epoch === feed.epoch && c.filter === filter) return c.list;
    const fresh = store.list(kind, filter);
    const list = c !== null && c.feed === feed ? reuseRows(c.list, fresh) : fresh;
    cache.current = { feed, epoch: feed.epoch, filter, list };
    return list;
  };
  const list = useSyncExternalStore(subscribe, getSnapshot);
  useDebugValue(list, (l) => `${l.length} of ${kind}`);
  return list;
}

/** `fresh` with the rows of `old` that did not change; `old` itself when nothing did. */
function reuseRows(old, fresh) {
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
  const topic = hubOf(store).status;
  const subscribe = useCallback((onChange) => topic.subscribe(onChange), [topic]);
  const status = useSyncExternalStore(subscribe, () => topic.current);
  useDebugValue(status, (s) => `${s.connection}, ${s.pending} pending`);
  return status;
}
