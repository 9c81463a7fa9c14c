// TinyBase's WebSocket sync server, as run.mjs starts it (a child process of
// its own, like the Zestor sync-server):
//
//   node tinybase-server.mjs --dir DIR [--port 0]
//
// A `ws` WebSocketServer on 127.0.0.1 with TinyBase's createWsServer. Every
// path (one per TinyBase "room") gets a server-side MergeableStore persisted
// by TinyBase's FilePersister to DIR/<path>.json (loaded when the path's
// first client connects, saved after every change; the persister only lives
// while the path has clients).
//
// Prints `listening on PORT` on stdout once it accepts connections. When
// started with an IPC channel (child_process.fork) it sends
// {type: 'path-ready', pathId, rows} once a path's store is loaded and
// persisting, and {type: 'stats', ...} when sent {type: 'stats'}.
// SIGTERM / SIGINT: destroys the server (closing every client) and exits.

import fs from 'node:fs';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import { createMergeableStore } from 'tinybase';
import { createFilePersister } from 'tinybase/persisters/persister-file';
import { createWsServer } from 'tinybase/synchronizers/synchronizer-ws-server';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const dir = opt('--dir');
const port = Number(opt('--port', '0'));
if (!dir) {
  console.error('tinybase-server: --dir DIR is required');
  process.exit(2);
}

// TinyBase reports here, among others, requests that no client answered (the
// server's own synchronizer asks every client on a path for its content
// hashes; run.mjs's thin subscribers never answer) and overflowing clients
// (closed with 1013). Counted, logged to stderr, and reported on request.
const errors = [];
const onIgnoredError = (error) => {
  const message = String(error?.message ?? error);
  errors.push(message);
  if (errors.length <= 10) console.error(`tinybase-server: ignored error: ${message}`);
};

const createPersisterForPath = (pathId) => {
  const file = path.join(dir, `${pathId.replace(/[^\w.-]/g, '_')}.json`);
  const store = createMergeableStore();
  // A new path starts from an empty store's file, not an empty file (which
  // the persister would report as a JSON error).
  if (!fs.existsSync(file)) fs.writeFileSync(file, JSON.stringify(store.getMergeableContent()));
  const persister = createFilePersister(store, file, onIgnoredError);
  return [
    persister,
    (loaded) => {
      const rows = loaded.getTableIds().reduce((n, t) => n + loaded.getRowCount(t), 0);
      process.send?.({ type: 'path-ready', pathId, rows });
    },
  ];
};

const wss = new WebSocketServer({ host: '127.0.0.1', port });
wss.on('error', (e) => {
  console.error(`tinybase-server: ${e.message}`);
  process.exit(1);
});
const server = createWsServer(wss, createPersisterForPath, onIgnoredError);

wss.on('listening', () => {
  console.log(`listening on ${wss.address().port}`);
});

process.on('message', (msg) => {
  if (msg?.type === 'stats') {
    process.send?.({ type: 'stats', ...server.getStats(), ignoredErrors: errors.length, lastErrors: errors.slice(-5) });
  }
});

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(0), 5000);
  try {
    await server.destroy();
  } catch (e) {
    console.error(`tinybase-server: destroy: ${e.message}`);
  }
  clearTimeout(timer);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('disconnect', stop);
