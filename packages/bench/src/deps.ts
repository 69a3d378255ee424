// Paths in the repository for what the bench starts or reads by file (its own child scripts, the
// built CLI, the peers' venv and scripts, the sample-model cache). The workspace packages it uses
// are imported by name; this file runs as packages/bench/dist/deps.js.
import { fileURLToPath } from 'node:url';

/** The repository root. */
const ROOT_URL = new URL('../../../', import.meta.url);

/** Path of a file given relative to the repository root. */
export function repoPath(p: string): string {
  return fileURLToPath(new URL(p, ROOT_URL));
}
