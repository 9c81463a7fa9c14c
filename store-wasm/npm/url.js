// `zestor/url`: the module is fetched from zestor_bg.wasm next to this file
// (or from wherever `init(url)` says), compiled while it downloads and
// cached by the browser on its own. For a plain <script type="module">
// served with the package's files, and for bundlers that emit
// `new URL('…', import.meta.url)` assets from dependencies (webpack 5, and
// Vite's production build).

import { entry } from './loader.js';

export const { init, open, deleteStore } = entry(() => new URL('./zestor_bg.wasm', import.meta.url));
