// The sync status bar: the connection, the ops not yet confirmed, the
// server revision this browser has caught up with, the store's own
// revision, and the last error: `store.status()` and `store.on('status')`.

const LABELS = {
  online: 'Online',
  connecting: 'Connecting…',
  offline: 'Offline',
  local: 'Local only',
};

const HINTS = {
  online: 'Connected to sync-server: changes go out and come in as they happen',
  connecting: 'Reaching sync-server; changes are kept here meanwhile',
  offline: 'No connection: changes are saved in this browser and sync when it returns',
  local: 'This store does not sync',
};

export class StatusBar {
  constructor(root) {
    this.root = root;
    this.connection = root.querySelector('[data-testid="status-connection"]');
    this.pending = root.querySelector('[data-testid="status-pending"]');
    this.synced = root.querySelector('[data-testid="status-last-synced"]');
    this.storeRev = root.querySelector('[data-testid="store-rev"]');
    this.tab = root.querySelector('[data-testid="status-tab"]');
    this.error = root.querySelector('[data-testid="status-error"]');
    this.hint = root.querySelector('[data-testid="status-hint"]');
  }

  /** Shows `status` (a `SyncStatus`). */
  update(status) {
    const { connection, pending, lastSyncedRev, leader, error } = status;
    // A refusal retrying cannot fix stops syncing: say so rather than "offline".
    const stopped = error && connection !== 'online' && FATAL.has(error.code);
    const state = stopped ? 'stopped' : connection;
    this.connection.dataset.connection = connection;
    this.connection.dataset.state = state;
    this.connection.querySelector('.label').textContent = stopped ? 'Sync stopped' : LABELS[connection] ?? connection;
    this.connection.title = stopped ? 'The server refused this token; changes stay in this browser' : HINTS[connection] ?? '';

    this.pending.dataset.count = String(pending);
    this.pending.querySelector('.value').textContent = String(pending);
    this.pending.classList.toggle('has-pending', pending > 0);

    this.synced.dataset.rev = lastSyncedRev === null ? '' : String(lastSyncedRev);
    this.synced.querySelector('.value').textContent = lastSyncedRev === null ? '–' : String(lastSyncedRev);

    this.hint.hidden = stopped || !(connection === 'offline' || connection === 'connecting') || (pending === 0 && connection === 'connecting');

    this.tab.hidden = leader;
    this.tab.textContent = leader ? '' : 'synced by another tab';
    this.tab.title = 'Tabs of one store share one connection: the tab holding it relays for the others';

    this.error.hidden = !error;
    this.error.dataset.code = error ? error.code : '';
    this.error.textContent = '';
    if (error) {
      const code = document.createElement('code');
      code.textContent = error.code;
      this.error.append(code, ' ', error.message);
      this.error.title = `${error.code}: ${error.message}`;
    }
  }

  /** Shows the store's revision (`store.rev()`). */
  setStoreRev(rev) {
    this.storeRev.dataset.rev = String(rev);
    this.storeRev.querySelector('.value').textContent = String(rev);
  }
}

/** Session refusals after which the package stops syncing (package README). */
const FATAL = new Set(['unauthorized', 'forbidden', 'unsupported_protocol']);
