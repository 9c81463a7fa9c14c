import type { Entry, Json, KeyedEntry, SyncStatus, ZestorStore } from './zestor.js';

// Every hook takes the store first; without one (`null` while it opens)
// it shows nothing: `undefined`, `[]`, or a `connecting` status with
// nothing pending. Server rendering shows the same. A store that closes
// leaves the hooks showing what they last read.

/**
 * The entry at `kind`/`key` (`undefined` when there is none), kept current:
 * the component re-renders when that key changes (a write here or from the
 * server, an ack that clears `pending`, a rollback), and only then.
 *
 * @example
 * function Title({ store, id }: { store: ZestorStore; id: string }) {
 *   const task = useEntry<Task>(store, "task", id);
 *   return <span>{task ? task.value.title : "…"}</span>;
 * }
 */
export function useEntry<T = Json>(store: ZestorStore | null | undefined, kind: string, key: string): Entry<T> | undefined;

/**
 * The entries of `kind` that pass `filter` (every entry without one), sorted
 * by key, kept current: the component re-renders when a change of `kind`
 * changes the list. A row that did not change keeps its identity, so a row
 * component wrapped in `React.memo` re-renders only when its own entry
 * changes. `filter` runs again on each change of `kind`, and on a render
 * that passes a new function: give a stable one (`useCallback`).
 */
export function useList<T = Json>(
  store: ZestorStore | null | undefined,
  kind: string,
  filter?: (value: T, key: string) => boolean,
): KeyedEntry<T>[];

/** The store's sync status, as `store.status()` gives it, kept current. */
export function useSyncStatus(store: ZestorStore | null | undefined): SyncStatus;
