// The board's service worker: keeps the app's files so the page loads while
// the server is down. Network first (a rebuilt app shows at once), the
// cache when the network fails. The data never goes through here: it lives
// in IndexedDB, and sync is a WebSocket.

const CACHE = 'zestor-demo';
const SKIP = new Set(['/sync', '/healthz', '/metrics']);

self.addEventListener('install', (event) => {
  event.waitUntil(precache());
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

/** Caches every file of the app, as listed by scripts/demo.sh in precache.json. */
async function precache() {
  try {
    const res = await fetch('precache.json', { cache: 'no-store' });
    if (!res.ok) return;
    const { files } = await res.json();
    const cache = await caches.open(CACHE);
    await cache.addAll(files);
  } catch {
    // Files are cached as they load instead.
  }
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin || SKIP.has(url.pathname)) return;
  event.respondWith(networkFirst(request));
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    // `?token=…` and `?device=…` pages are the same file.
    const hit = await cache.match(request, { ignoreSearch: true });
    if (hit) return hit;
    throw err;
  }
}
