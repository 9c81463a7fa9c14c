// Rollup resolves packages from node_modules only with this plugin.
import { nodeResolve } from '@rollup/plugin-node-resolve';

export default {
  input: 'main.js',
  output: { dir: process.env.OUT_DIR, format: 'es' },
  plugins: [nodeResolve({ browser: true })],
};
