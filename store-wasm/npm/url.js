// `zestor/url`: the module is fetched from zestor_bg.wasm next to this file
// (or from wherever `init(url)` says), compiled while it downloads and
// cached by the browser on its own. For a plain <script type="module">
// served with the package's files, and for webpack 5, which emits
// `new URL('…', import.meta.url)` assets of dependencies (the `webpack`
// export condition of `zestor` gives it this file).

import { entry } from './loader.js';

export const { init, open, deleteStore } = entry(() => new URL('./zestor_bg.wasm', import.meta.url));
