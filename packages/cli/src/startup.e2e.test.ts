// What the CLI loads before a command runs. Each command imports the packages it runs inside its
// action (main.ts): `flotilla ls`, `--help` or a worker process's parsing must not load onnxruntime,
// the head or a local cluster (`demo`), which took the CLI's start from ≈ 0.8 s to ≈ 0.58 s here
// (2026-12-01, AMD EPYC). A module loader hook lists every package the process resolved.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI_MAIN } from './testing/run-cli.js';

let dir: string;
let register: string;

beforeAll(() => {
  if (!existsSync(CLI_MAIN)) throw new Error(`${CLI_MAIN} is missing: run pnpm build (pnpm test does)`);
  dir = mkdtempSync(join(tmpdir(), 'flotilla-startup-'));
  const hooks = join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    `export async function resolve(spec, ctx, next) { const r = await next(spec, ctx); process.stderr.write('RESOLVED ' + r.url + '\\n'); return r; }\n`,
  );
  register = join(dir, 'register.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The workspace packages and npm packages a CLI run resolved. */
function loaded(args: string[]): { status: number | null; packages: string[] } {
  const r = spawnSync(process.execPath, ['--import', register, CLI_MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  const packages = new Set<string>();
  for (const line of r.stderr.split('\n')) {
    if (!line.startsWith('RESOLVED ')) continue;
    const url = line.slice('RESOLVED '.length);
    const own = /\/packages\/([a-z-]+)\/(?:dist|src)\//.exec(url);
    const npm = /\/node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (npm) packages.add(npm[1]!);
    else if (own) packages.add(`@flotilla/${own[1]}`);
  }
  return { status: r.status, packages: [...packages].sort() };
}

const HEAVY = ['onnxruntime-node', 'systeminformation', '@flotilla/head', '@flotilla/worker', '@flotilla/local', 'fastify'];

describe('the CLI loads what a command runs, when it runs', () => {
  test.each([[['--version']], [['ls', '--help']], [['worker', '--help']], [['up', '--help']], [['gateway', '--help']]])(
    '%j loads no onnxruntime, head, worker, local cluster or HTTP server',
    (args) => {
      const r = loaded(args);
      expect(r.status).toBe(0);
      expect(r.packages).toContain('commander'); // the hook saw the CLI's own imports
      expect(r.packages.filter((p) => HEAVY.includes(p))).toEqual([]);
    },
  );
});
