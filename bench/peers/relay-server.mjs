// The floor of run.mjs's propagation workload: a raw `ws` broadcast relay.
//
//   node relay-server.mjs [--port 0]
//
// A connection to /writer is the writer: every frame it sends is forwarded,
// as is, to every other open connection. Any other connection is a
// subscriber and needs no handshake. No storage, no parsing.
// Prints `listening on PORT` on stdout; SIGTERM / SIGINT close it.

import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
const at = args.indexOf('--port');
const port = at >= 0 ? Number(args[at + 1]) : 0;

const subscribers = new Set();
const wss = new WebSocketServer({ host: '127.0.0.1', port });
wss.on('error', (e) => {
  console.error(`relay-server: ${e.message}`);
  process.exit(1);
});
wss.on('connection', (ws, request) => {
  ws.on('error', () => {});
  if (request.url === '/writer') {
    ws.on('message', (data, isBinary) => {
      for (const s of subscribers) if (s.readyState === s.OPEN) s.send(data, { binary: isBinary });
    });
  } else {
    subscribers.add(ws);
    ws.on('close', () => subscribers.delete(ws));
  }
});
wss.on('listening', () => console.log(`listening on ${wss.address().port}`));

const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
