import { defineConfig } from 'vite';

// The lab is a static app served by `npm start`; it talks to the same origin's transports.
export default defineConfig({
  root: import.meta.dirname,
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  // The Backpressure page's consumer worker imports modules: emit it as an ES module worker.
  worker: { format: 'es' },
});
