// Where the workspace packages the bench uses are, as built by `pnpm build`. The bench is compiled
// from scripts/ into scripts/dist/, one folder deeper, so a relative import would point at different
// places in source and output: callers take types from the source's point of view
// (`typeof import('../../packages/x/dist/index.js')`) and load the module with `builtPackage('x')`,
// resolved against this file's URL at run time.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs as scripts/dist/bench/deps.js). */
const ROOT_URL = new URL('../../../', import.meta.url);
export const ROOT = fileURLToPath(ROOT_URL);

/** Path of a file given relative to the repository root. */
export function repoPath(p: string): string {
  return fileURLToPath(new URL(p, ROOT_URL));
}

/** The built entry of packages/<name> (ES module). */
export function builtPackage(name: string): Promise<unknown> {
  return import(new URL(`packages/${name}/dist/index.js`, ROOT_URL).href);
}

/** A module only the worker package depends on (onnxruntime-node), resolved from there. */
export function requireFromWorker(id: string): unknown {
  return createRequire(repoPath('packages/worker/package.json'))(id);
}
