// The package's two entry points (index.js, url.js) differ only in where
// the WebAssembly module comes from; this is the rest of both. The module
// is loaded once, on the first `init()`, `open()` or `deleteStore()`, and
// shared by both entry points (they wrap the same wasm-bindgen glue).

import initGlue, * as glue from './glue.js';

/** The first load, shared by every later call; cleared when it fails, so a later call tries again. */
let loading = null;
/** The source the app gave `init`, used again by a retry (`open()` after a failed `init(url)`). */
let given = undefined;

function load(source) {
  if (loading === null) {
    loading = (async () => {
      let from;
      try {
        from = await source();
        await initGlue({ module_or_path: from });
      } catch (err) {
        throw loadError(from, err);
      }
    })();
    loading.catch(() => {
      loading = null;
    });
  }
  return loading;
}

/**
 * The package's API, loading the module from `defaultSource()` (a URL, a
 * Response, bytes, or a promise of one) unless `init(source)` names another.
 */
export function entry(defaultSource) {
  const init = (source) => {
    if (source !== undefined) given = source;
    return load(given === undefined ? defaultSource : () => given);
  };
  return {
    init,
    open: async (options) => {
      await init();
      return glue.open(options);
    },
    deleteStore: async (name) => {
      await init();
      return glue.deleteStore(name);
    },
  };
}

/** A failed load as a ZestorError with code `wasm_load`, naming what was fetched. */
function loadError(from, err) {
  const url = from instanceof URL || typeof from === 'string' ? from : from instanceof Response ? from.url : '';
  const where = url ? ` from ${url}` : '';
  const error = new Error(`zestor: cannot load its WebAssembly module${where}: ${err?.message ?? err}`, { cause: err });
  error.name = 'ZestorError';
  error.code = 'wasm_load';
  return error;
}
