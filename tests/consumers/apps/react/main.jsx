// A small React app on zestor/react: a task list (useList, with a filter),
// a detail pane (useEntry) and a status line (useSyncStatus). Every
// component counts its renders in `window.renders`, and the detail pane
// records what it showed in `window.shown`, for the test to read;
// `window.reads` counts the hooks' store reads and `window.subscriptions`
// the watches and listeners they hold.

import { StrictMode, memo, useCallback, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { open } from 'zestor';
import { useEntry, useList, useSyncStatus } from 'zestor/react';

window.renders = {};
window.shown = [];
const rendered = (name) => {
  window.renders[name] = (window.renders[name] ?? 0) + 1;
};

function Status({ store }) {
  const status = useSyncStatus(store);
  rendered('status');
  return (
    <p data-testid="status" data-connection={status.connection}>
      {status.connection}, {status.pending} pending
    </p>
  );
}

const Item = memo(function Item({ entry }) {
  rendered(`item:${entry.key}`);
  return (
    <li data-testid={`item-${entry.key}`} data-pending={String(entry.pending)}>
      {entry.value.title}
    </li>
  );
});

function Tasks({ store }) {
  const [showDone, setShowDone] = useState(true);
  const filter = useCallback((task) => showDone || !task.done, [showDone]);
  const tasks = useList(store, 'task', filter);
  window.setShowDone = setShowDone;
  rendered('list');
  return (
    <ul data-testid="list">
      {tasks.map((entry) => (
        <Item key={entry.key} entry={entry} />
      ))}
    </ul>
  );
}

function Detail({ store, id }) {
  const entry = useEntry(store, 'task', id);
  rendered(`detail:${id}`);
  window.shown.push(entry ? { title: entry.value.title, version: entry.version, pending: entry.pending } : null);
  return (
    <p data-testid={`detail-${id}`} data-pending={String(entry?.pending)}>
      {entry ? entry.value.title : '(none)'}
    </p>
  );
}

function App({ store }) {
  return (
    <>
      <Status store={store} />
      <Detail store={store} id="a" />
      <Tasks store={store} />
    </>
  );
}

const q = new URLSearchParams(location.search);
const store = await open({
  name: 'consumer-react',
  sync: { url: q.get('sync'), namespace: q.get('ns'), token: q.get('token') },
});
window.store = store;
// Counts the hooks' reads of the store, and their live subscriptions (for
// the test of unmounting).
window.reads = { get: 0, list: 0 };
for (const method of ['get', 'list']) {
  const read = store[method].bind(store);
  store[method] = (...args) => {
    window.reads[method]++;
    return read(...args);
  };
}
window.subscriptions = 0;
for (const method of ['watch', 'on']) {
  const subscribe = store[method].bind(store);
  store[method] = (...args) => {
    const stop = subscribe(...args);
    window.subscriptions++;
    let stopped = false;
    return () => {
      if (!stopped) window.subscriptions--;
      stopped = true;
      stop();
    };
  };
}
window.root = createRoot(document.getElementById('root'));
window.root.render(
  <StrictMode>
    <App store={store} />
  </StrictMode>,
);
