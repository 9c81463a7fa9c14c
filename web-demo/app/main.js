// The task board's entry point: opens the store with the npm package's
// `zestor/url` entry point, as a page without a bundler imports it, and
// wires the board, the status bar and the toasts to it.

import { open } from './pkg/url.js';
import { Board } from './board.js';
import { config, linkWith, KIND } from './config.js';
import { StatusBar } from './status.js';
import { toast } from './toast.js';

const cfg = config();
const $ = (selector) => document.querySelector(selector);

const statusBar = new StatusBar($('[data-testid="status-bar"]'));
$('[data-testid="namespace"]').textContent = cfg.namespace;
$('[data-testid="token"]').textContent = cfg.device ? `${cfg.token} · device ${cfg.device}` : cfg.token;
tourLinks();
registerServiceWorker();

let store;
try {
  store = await open({
    name: cfg.dbName,
    sync: { url: cfg.syncUrl, namespace: cfg.namespace, token: cfg.token },
  });
} catch (err) {
  failed(err);
  throw err;
}

// ---- read-only or read-write -------------------------------------------------
//
// The package does not say which rights the server granted the token, so
// the board learns it from its writes: an ack means read-write, `forbidden`
// means read-only.

const modeChip = $('[data-testid="mode"]');
function setMode(mode) {
  if (modeChip.dataset.mode === mode) return;
  modeChip.dataset.mode = mode;
  modeChip.hidden = false;
  modeChip.textContent = mode === 'read' ? 'read-only' : 'read & write';
  modeChip.title =
    mode === 'read' ? 'The server refuses this token’s writes (forbidden)' : 'The server accepted a write with this token';
}

// ---- the board ---------------------------------------------------------------

const board = new Board($('[data-testid="board"]'), store, {
  render: () => statusBar.setStoreRev(store.rev()),
  error: ({ code, message, action, title }) => {
    if (code === 'forbidden') setMode('read');
    toast({ code, title: refusedTitle(code, action, title), message });
  },
  watchEnded: (error) => {
    toast({ code: error.code, title: 'The board stopped updating: reload the page', message: error.message, timeoutMs: 3_600_000 });
  },
});

function refusedTitle(code, action, title) {
  const what = { create: 'Not added', edit: 'Not saved', move: 'Not moved', delete: 'Not deleted' }[action] ?? 'Refused';
  const name = title ? ` “${short(title)}”` : '';
  if (code === 'conflict') return `${what}:${name} was changed elsewhere first`;
  if (code === 'key_not_found') return `${what}:${name} was deleted elsewhere`;
  return `${what}:${name || ' the store refused it'}`;
}

// ---- sync status, acks and rollbacks -------------------------------------------

statusBar.update(store.status());
statusBar.setStoreRev(store.rev());
store.on('status', (status) => {
  statusBar.update(status);
  statusBar.setStoreRev(store.rev());
  if (status.error?.code === 'forbidden') setMode('read');
  board.refreshPending();
});
store.on('acked', () => {
  setMode('read_write');
  board.refreshPending();
});
store.on('rejected', ({ kind, key, code, message }) => {
  if (kind !== KIND) return;
  if (code === 'forbidden') setMode('read');
  // The store has already rolled the op back; the watch shows it.
  toast({ code, title: `Rolled back: “${short(board.titleOf(key))}” — the server refused the change`, message });
  board.refreshPending();
  queueMicrotask(() => board.flash(key));
});

board.start();

const form = $('[data-testid="new-card-form"]');
form.addEventListener('submit', (e) => {
  e.preventDefault();
  board.create(form);
});
form.addEventListener('input', (e) => {
  const error = form.querySelector(`[data-testid="validation-error"][data-field="${e.target.name}"]`);
  if (error) error.hidden = true;
  form.querySelector('[data-testid="validation-error"][data-field=""]').hidden = true;
  e.target.removeAttribute('aria-invalid');
});

$('[data-testid="boot"]').hidden = true;
form.hidden = false;
$('[data-testid="board"]').hidden = false;
document.documentElement.dataset.ready = 'true';

// For a look from the console: `zestorStore.status()`, `zestorStore.list('card')`.
window.zestorStore = store;

// ---- helpers -------------------------------------------------------------------

/** A title cut to fit in a toast. */
function short(title, max = 60) {
  return title.length > max ? `${title.slice(0, max - 1).trimEnd()}…` : title;
}

function failed(err) {
  const boot = $('[data-testid="boot"]');
  boot.classList.add('failed');
  boot.textContent = '';
  const head = document.createElement('p');
  head.textContent = 'The store could not open.';
  const detail = document.createElement('p');
  const code = document.createElement('code');
  code.textContent = err?.code ?? err?.name ?? 'error';
  detail.append(code, ' ', err?.message ?? String(err));
  boot.append(head, detail);
  document.documentElement.dataset.ready = 'failed';
}

function tourLinks() {
  const reader = cfg.token === 'dev-reader';
  const links = {
    same: linkWith({}),
    device: linkWith({ device: cfg.device === '2' ? '3' : '2' }),
    reader: linkWith({ token: reader ? null : 'dev-reader', device: null }),
  };
  for (const a of document.querySelectorAll('[data-link]')) a.href = links[a.dataset.link];
  if (reader) $('[data-link="reader"]').textContent = 'read-write token';
}

/**
 * A service worker keeps the app's files, so a reload works while the
 * server is down (the data comes from IndexedDB either way). Only where
 * service workers exist: https, localhost and 127.0.0.1.
 */
function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register('sw.js').catch(() => {
    // Without it the board still works; only an offline reload needs it.
  });
}
