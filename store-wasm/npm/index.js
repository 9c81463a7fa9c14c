// `zestor`: the WebAssembly module is inlined (gzipped, in base64), so it
// loads with any bundler and from a plain <script type="module"> with no
// configuration. webpack is given url.js instead (the `webpack` export
// condition), which emits the module as a file of its own.

import { entry } from './loader.js';
import gzBase64 from './wasm-inline.js';

/** The module as a Response, decompressed while it compiles. */
function wasmResponse() {
  if (typeof DecompressionStream !== 'function') {
    throw new Error('this browser has no DecompressionStream (Safari 16.4, Firefox 113 and Chrome 80 have it); use zestor/url, which fetches zestor_bg.wasm');
  }
  const gz = Uint8Array.fromBase64 ? Uint8Array.fromBase64(gzBase64) : decodeBase64(gzBase64);
  const body = new Blob([gz]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Response(body, { headers: { 'Content-Type': 'application/wasm' } });
}

function decodeBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export const { init, open, deleteStore } = entry(wasmResponse);
