/** Any value JSON can hold: what a store keeps. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * `T` checked member by member as a value to write: a `Json`, or a model
 * declared as an `interface` or a `type` whose members are JSON values (an
 * `interface` has no index signature, so it is not a `Json` itself). A
 * member that is a function, a symbol, a bigint or a `Map` makes its type
 * `never`, and the write does not compile; so does a member typed
 * `unknown`, and a class instance with methods (the store would keep only
 * its own properties: write a plain object). A `Date` is written as
 * `toJSON()` gives it (ISO text) and reads back as that string: declare it
 * `string` in a model that is read back. Optional members are fine; a
 * member whose value is `undefined` is refused when written (`encoding`):
 * leave it out, or use `null`.
 */
export type JsonInput<T> = T extends Json
  ? T
  : T extends bigint | symbol | undefined | ((...args: never[]) => unknown)
    ? never
    : T extends { toJSON(): unknown }
      ? T
      : T extends readonly unknown[]
        ? { [I in keyof T]: JsonInput<T[I]> }
        : T extends object
          ? { [K in keyof T]: JsonInput<T[K]> }
          : never;

/**
 * A JSON Merge Patch (RFC 7396) of a `T`: any of its members, each a patch of
 * that member or `null` to remove it; arrays and other values replace whole.
 */
export type MergePatch<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: MergePatch<T[K]> | null }
    : T;

/** A JSON Schema (draft 2020-12 subset; see the store-core docs). */
export type JsonSchema = { [keyword: string]: Json } | boolean;

/** How to open a store. */
export interface OpenOptions {
  /** The IndexedDB database name; one store per name. */
  name: string;
  /** Sync through a `sync-server`; without it the store is local only. */
  sync?: SyncOptions;
  /** JSON Schemas by kind, checked on every local write. The server's schemas (from its `welcome`) are checked too, once known. */
  schemas?: Record<string, JsonSchema>;
  /** Validators by kind: return nothing or `true` to accept; return `false` or a message, or throw, to refuse. */
  validate?: Record<string, (value: Json, key: string) => void | boolean | string>;
  /** When `compare(old, new)` is true the write is `unchanged` (default: semantic JSON equality). */
  compare?: (oldValue: Json, newValue: Json) => boolean;
  /** How many revisions of history watches can resume from (default 10,000). */
  retention?: number;
}

export interface SyncOptions {
  /** The server's sync endpoint, e.g. `ws://localhost:8787/sync`. */
  url: string;
  /** The namespace to sync. */
  namespace: string;
  /**
   * The credential the server checks: a string, or a function that returns
   * one (or a promise of one). The function is called before every
   * connection attempt (the first and every reconnect), by the tab that
   * holds the connection only; its token is sent in that attempt's `hello`.
   *
   * A session whose token expires (or is revoked) ends with `unauthorized`
   * (or `forbidden`) in `status().error`, and the store connects again: with
   * a function, with the token it gives then; with a string, with the same
   * one, which the server refuses. A token refused when connecting stops
   * syncing, with the error in `status().error`; reads and writes go on
   * locally and pending writes stay queued. A function that throws, rejects
   * or gives no string counts as a failed attempt: `token_failed` in
   * `status().error` and another attempt after the usual backoff. The error
   * clears once a session is welcomed.
   *
   * @example
   * // A short-lived JWT from the app's backend, which knows the user.
   * token: async () => {
   *   const res = await fetch("/api/sync-token", { credentials: "same-origin" });
   *   if (!res.ok) throw new Error(`sync token: HTTP ${res.status}`);
   *   return (await res.json()).token;
   * }
   */
  token: string | (() => string | Promise<string>);
  /** Sync only these kinds (default: every kind). */
  kinds?: string[];
  /** The first reconnect delay in ms (default 250); it doubles, with jitter, up to `backoffMaxMs`. */
  backoffMinMs?: number;
  /** The longest reconnect delay in ms (default 30,000). */
  backoffMaxMs?: number;
}

/** A stored value with its metadata. */
export interface Entry<T = Json> {
  value: T;
  /** Bumped by every change of this key; the server's version once confirmed. */
  version: number;
  /** The store revision of the change that wrote it. */
  rev: number;
  /** Written locally and not yet confirmed by the server. */
  pending: boolean;
}

export interface KeyedEntry<T = Json> extends Entry<T> {
  key: string;
}

export type WriteResultKind = "created" | "updated" | "unchanged";

/** The outcome of a write, once it is durable locally. */
export interface WriteResult {
  result: WriteResultKind;
  version: number;
  rev: number;
  /** The op sent to the server (synced stores, when something changed); pass it to `store.confirmed`. */
  opId?: string;
}

export interface KeyedWriteResult extends WriteResult {
  key: string;
}

export interface DeleteResult<T = Json> {
  /** The value that was removed. */
  value: T;
  /** The version the delete carried. */
  version: number;
  rev: number;
  opId?: string;
}

export interface WriteOptions {
  /** Compare-and-set: refuse with code `conflict` unless the key is at this version (0: must not exist). */
  ifVersion?: number;
}

/** The server's answer to an op. */
export interface Ack {
  opId: string;
  result: WriteResultKind | "deleted" | "absent";
  version: number;
  /** The server revision of the change. */
  rev: number;
}

export type EventType = "create" | "update" | "delete";

export interface WatchEvent<T = Json> {
  kind: string;
  key: string;
  type: EventType;
  /** The new value; the removed value for `delete`. */
  value: T;
  version: number;
  /** The store revision: every change has one, in order, without gaps for `watchAll`. */
  rev: number;
  /** A local write not yet confirmed by the server. */
  pending: boolean;
}

export interface WatchOptions {
  /** Deliver the current entries first (as `create` events), then changes. */
  replay?: boolean;
  /** Only these event types. */
  types?: EventType[];
  /** Buffered events before the watch ends with `overflow` (default 1,024). */
  bufferSize?: number;
  /** Resume after this revision; ends with `compacted` when it is older than the retained history. */
  fromRev?: number;
}

export interface WatchIterOptions extends WatchOptions {
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
}

/** Called with each event; called once more with `(null, error)` when the watch ends for any reason but unsubscribing: `overflow`, `compacted`, `revision_ahead`, or `closed` when the store closed. */
export type WatchCallback<T = Json> = (event: WatchEvent<T> | null, error?: ZestorError) => void;

export type Connection = "local" | "offline" | "connecting" | "online";

export interface SyncStatus {
  /** `local` when the store does not sync. */
  connection: Connection;
  /** Ops written here and not yet answered by the server. */
  pending: number;
  /** The server revision the confirmed state is at; `null` before the first sync. */
  lastSyncedRev: number | null;
  /** Whether this tab holds the connection (other tabs of the same store relay through it). */
  leader: boolean;
  /** What the token allows, once the server said (`null` before, and for a local store). */
  rights: "read" | "read_write" | null;
  /** The last error reported by the server or the connection, if any. */
  error: { code: ZestorErrorCode; message: string } | null;
}

export interface RejectedOp {
  opId: string;
  kind: string;
  key: string;
  code: string;
  message: string;
}

/** An ack as the `acked` event carries it: the written entry is no longer pending. */
export interface AckedOp extends Ack {
  kind: string;
  key: string;
}

export interface StoreEvents {
  status: SyncStatus;
  acked: AckedOp;
  rejected: RejectedOp;
}

/**
 * Every code an error (or `status().error`) carries; stable.
 *
 * - The store's: `validation` (a validator or JSON Schema refused the value),
 *   `conflict` (`ifVersion` did not match), `key_not_found`, `kind_required`,
 *   `key_too_long` (a kind or key over 1,024 bytes), `invalid_key` (NUL in a
 *   kind or key), `closed`, `overflow`, `compacted`, `revision_ahead`,
 *   `function` (a `setFn` function threw), `encoding` (not a JSON value),
 *   `schema` (a schema that does not compile), `stale_transaction`, `decode`
 *   (IndexedDB holds data this version cannot read), `storage` (IndexedDB
 *   failed).
 * - The package's: `invalid_argument` (a call it does not accept), `locked`
 *   (a local store open in another tab), `closed_${number}` (the connection
 *   closed with a code a retry cannot fix), `token_failed` (the sync `token`
 *   function threw, rejected or gave no string; retried), `wasm_load` (the
 *   WebAssembly module could not be fetched or compiled; see `init`).
 * - The server's (docs/protocol.md), for a refused op or session.
 */
export type ZestorErrorCode =
  | "validation"
  | "conflict"
  | "key_not_found"
  | "kind_required"
  | "key_too_long"
  | "invalid_key"
  | "closed"
  | "overflow"
  | "compacted"
  | "revision_ahead"
  | "function"
  | "encoding"
  | "schema"
  | "stale_transaction"
  | "decode"
  | "storage"
  | "invalid_argument"
  | "locked"
  | `closed_${number}`
  | "token_failed"
  | "wasm_load"
  | "bad_message"
  | "unknown_type"
  | "too_large"
  | "unsupported_protocol"
  | "hello_expected"
  | "unauthorized"
  | "forbidden"
  | "too_many_in_flight"
  | "slow_consumer"
  | "timeout"
  | "shutting_down"
  | "internal";

/** Errors thrown or rejected by the store. */
export interface ZestorError extends Error {
  name: "ZestorError";
  /** Stable: see {@link ZestorErrorCode}. */
  code: ZestorErrorCode;
}

/**
 * A store: reads from memory, writes durable in IndexedDB before they resolve,
 * synced through a `sync-server` when opened with `sync`.
 */
export interface ZestorStore {
  /** The entry at `kind`/`key`, or `undefined`. */
  get<T = Json>(kind: string, key: string): Entry<T> | undefined;
  /** The entries of `kind` (sorted by key) that pass `filter`. */
  list<T = Json>(kind: string, filter?: (value: T, key: string) => boolean): KeyedEntry<T>[];
  count(kind: string): number;
  keys(kind: string): string[];
  values<T = Json>(kind: string): T[];
  getAll<T = Json>(kind: string): Record<string, Entry<T>>;
  /** Every kind that holds a key, sorted. */
  kinds(): string[];
  /** The store revision of the last change. */
  rev(): number;

  /** Writes `value` at `kind`/`key`: a `Json`, or a model declared as an `interface` (see {@link JsonInput}). */
  set(kind: string, key: string, value: Json, options?: WriteOptions): Promise<WriteResult>;
  set<T>(kind: string, key: string, value: T & JsonInput<T>, options?: WriteOptions): Promise<WriteResult>;
  /** Writes many keys of `kind` in one transaction, all or nothing; results in key order. */
  setMany(kind: string, items: Record<string, Json> | Array<[string, Json]>): Promise<KeyedWriteResult[]>;
  setMany<T>(
    kind: string,
    items: Record<string, T & JsonInput<T>> | Array<[string, T & JsonInput<T>]>,
  ): Promise<KeyedWriteResult[]>;
  /** Read-modify-write of an existing key (`key_not_found` otherwise); `fn` must not call the store. */
  setFn<T = Json>(kind: string, key: string, fn: (value: T) => T & JsonInput<T>, options?: WriteOptions): Promise<WriteResult>;
  /**
   * Edits an existing key with a JSON Merge Patch (RFC 7396): members of
   * `partial` are set (objects merge recursively), members set to `null` are
   * removed, anything else replaces the value. `key_not_found` for a missing
   * key; `validation` when the merged value is invalid; `unchanged` when it
   * changes nothing. A synced store sends the patch, which the server applies
   * to its value: two clients that patch different members both keep their
   * edit.
   */
  patch<T = Json>(kind: string, key: string, partial: MergePatch<T>, options?: WriteOptions): Promise<WriteResult>;
  /** Removes `kind`/`key`; `null` if it did not exist. */
  delete<T = Json>(kind: string, key: string, options?: WriteOptions): Promise<DeleteResult<T> | null>;
  /** Resolves with the server's ack of `opId`; rejects with the server's code (`ZestorError`) if it refused the op. */
  confirmed(opId: string): Promise<Ack>;

  /** Calls `callback` with each change of `kind` (`null`: every kind); returns the unsubscribe function. */
  watch<T = Json>(kind: string | null, options: WatchOptions, callback: WatchCallback<T>): () => void;
  /** The same as an async iterator: it ends when `signal` aborts or the store closes, and throws `overflow`, `compacted` or `revision_ahead`. */
  watchIter<T = Json>(kind: string | null, options?: WatchIterOptions): AsyncIterableIterator<WatchEvent<T>>;

  /** Where sync stands. */
  status(): SyncStatus;
  /** Subscribes to `status` changes, server acks and rejected (rolled back) ops; returns the unsubscribe function. */
  on<E extends keyof StoreEvents>(event: E, callback: (payload: StoreEvents[E]) => void): () => void;
  /** Closes the store: later calls fail with `closed`, watches end, the connection closes. */
  close(): Promise<void>;
}

/**
 * Opens (or creates) the store `options.name`, restored from IndexedDB before
 * it resolves. Loads the WebAssembly module first, if no call did yet.
 */
export function open(options: OpenOptions): Promise<ZestorStore>;

/** Deletes a store's IndexedDB database (close it first). */
export function deleteStore(name: string): Promise<void>;

/** Where {@link init} can load the WebAssembly module (`zestor_bg.wasm`) from. */
export type WasmSource =
  | string
  | URL
  | Request
  | Response
  | BufferSource
  | WebAssembly.Module
  | Promise<Response | BufferSource | WebAssembly.Module>;

/**
 * Loads the WebAssembly module, once: `open` and `deleteStore` call it
 * themselves, so calling it is only needed to load early, or from
 * elsewhere. `zestor` loads the module inlined in the package, `zestor/url`
 * fetches `zestor_bg.wasm` next to its own file; `source` names another
 * place (a URL on a CDN, bytes, a compiled module). Later calls wait for the
 * first load and ignore `source`. Rejects with code `wasm_load` when the
 * module cannot be fetched or compiled; a later call tries again.
 */
export function init(source?: WasmSource): Promise<void>;
