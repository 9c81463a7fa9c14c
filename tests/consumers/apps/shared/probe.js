// What every consumer app does with the package, whatever bundled it: open
// a synced store, wait for the entry the test wrote through the server's
// HTTP API, write one of its own and wait for the server's ack. The page's
// query string says where the server is (and `app` renames the app, for
// one app served two ways); the outcome lands in
// `window.zestorProbe` (`{ ok: true, … }` or `{ ok: false, error }`), where
// the test reads it.

export async function probe(zestor, defaultApp) {
  const q = new URLSearchParams(location.search);
  const app = q.get('app') ?? defaultApp;
  try {
    const store = await zestor.open({
      name: `consumer-${app}`,
      sync: { url: q.get('sync'), namespace: q.get('ns'), token: q.get('token') },
    });
    const seed = await new Promise((resolve, reject) => {
      const stop = store.watch('task', { replay: true }, (event, error) => {
        if (error) reject(error);
        else if (event.key === 'seed') {
          stop();
          resolve(event.value);
        }
      });
    });
    const written = await store.set('task', app, { title: `written by the ${app} app`, seed: seed.title });
    const ack = await store.confirmed(written.opId);
    window.zestorProbe = { ok: true, seed, ack, status: store.status() };
  } catch (err) {
    window.zestorProbe = { ok: false, error: `${err.name} ${err.code ?? ''}: ${err.message}` };
  }
}
