// Where the board syncs, from the page's own address:
//   ?token=T    the token sent to sync-server (default `dev-token`, see
//               sync-server/dev-tokens.txt; `dev-reader` may only read)
//   ?device=D   a separate store in this browser (its own IndexedDB and
//               connection), to play a second device from another window
// The sync URL is this server's /sync; the IndexedDB database is one per
// namespace, token and device, so a read-only token never shares a queue
// with a read-write one.

export const NAMESPACE = 'demo';
export const DEFAULT_TOKEN = 'dev-token';
export const KIND = 'card';

/** The board's configuration for `location`. */
export function config(loc = window.location) {
  const params = new URLSearchParams(loc.search);
  const token = params.get('token') || DEFAULT_TOKEN;
  const device = params.get('device') || '';
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const name = ['zestor-demo', NAMESPACE, token, device].filter(Boolean).join('/');
  return {
    namespace: NAMESPACE,
    token,
    device,
    syncUrl: `${scheme}//${loc.host}/sync`,
    dbName: name,
  };
}

/** This page's address with `changes` applied to its query (`null` removes a parameter). */
export function linkWith(changes, loc = window.location) {
  const url = new URL(loc.href);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) url.searchParams.delete(key);
    else url.searchParams.set(key, value);
  }
  url.hash = '';
  return url.pathname + url.search;
}
