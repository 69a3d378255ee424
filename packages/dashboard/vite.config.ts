// The dashboard's front-end bundle (`pnpm build` runs it after tsc): Preact + uPlot into dist/web,
// relative asset URLs (the page also works mounted under a prefix), no source maps, one JS and one
// CSS file. Type-checked by web/tsconfig.json (part of tsconfig.build.json), not here.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('./web/', import.meta.url)),
  base: './',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('./dist/web/', import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: false,
  },
});
