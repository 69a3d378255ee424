// End to end: `flotilla load` (the built CLI) against a cluster started in this process.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { CLI_MAIN, runCli } from './testing/run-cli.js';

const MAIN = CLI_MAIN;

const cli = (args: string[]) => runCli(args, {}, 60_000);

let cluster: LocalCluster;
let conn: string[];
const dir = mkdtempSync(join(tmpdir(), 'flotilla-load-'));
const input = join(dir, 'in.json');

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run pnpm build (pnpm test does)`);
  cluster = await LocalCluster.start({ workers: 1 });
  await cluster.client().deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
  await cluster.client().deploy(sampleModelPath('affine'), 'affine', { device: 'cpu' });
  conn = ['--nats', cluster.url, '--cluster', cluster.cluster];
  writeFileSync(input, JSON.stringify({ x: { dtype: 'float32', dims: [2, 16], data: Array.from({ length: 32 }, (_, i) => i / 32) } }));
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('flotilla load', () => {
  it('--json prints one summary object: all answered, none lost, rates and percentiles', async () => {
    const r = await cli(['load', 'mlp', '--input', input, '--concurrency', '4', '--duration', '1', '--json', ...conn]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ model: 'mlp', concurrency: 4, durationMs: 1000, retried: 0, errored: {}, lost: 0 });
    expect(s.ok).toBeGreaterThan(0);
    expect(s.ok).toBe(s.sent);
    expect(s.items).toBe(2 * s.ok);
    expect(s.itemsPerSec).toBeGreaterThan(0);
    expect(s.requestsPerSec).toBeGreaterThan(0);
    expect(s.elapsedMs).toBeGreaterThanOrEqual(1000);
    expect(s.latencyMs.p50).toBeGreaterThan(0);
    expect(s.latencyMs.p50).toBeLessThanOrEqual(s.latencyMs.p90);
    expect(s.latencyMs.p90).toBeLessThanOrEqual(s.latencyMs.p99);
    expect(s.latencyMs.p99).toBeLessThanOrEqual(s.latencyMs.max);
  });

  it('prints a human summary', async () => {
    const r = await cli(['load', 'mlp', '--input', input, '--concurrency', '2', '--duration', '0.3', ...conn]);
    expect(r.code).toBe(0);
    for (const word of ['sent', 'ok', 'retried', 'errored    none', 'lost       0', 'items/s', 'p50', 'p90', 'p99'])
      expect(r.stdout).toContain(word);
  });

  it('counts every request to an unknown model as UNKNOWN_MODEL and exits 3', async () => {
    const r = await cli(['load', 'nope', '--input', input, '--concurrency', '2', '--duration', '0.3', '--json', ...conn]);
    expect(r.code).toBe(3);
    const s = JSON.parse(r.stdout);
    expect(s.sent).toBeGreaterThan(0);
    expect(s).toMatchObject({ ok: 0, lost: 0, errored: { UNKNOWN_MODEL: s.sent } });
  });

  it('rejects bad options with BAD_REQUEST (exit 2)', async () => {
    const r = await cli(['load', 'mlp', '--input', input, '--concurrency', '0', '--duration', '1', '--json', ...conn]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error.code).toBe('BAD_REQUEST');
  });

  it('--mix FILE: requests spread over the models by weight, inputs relative to the file', async () => {
    writeFileSync(join(dir, 'a.json'), JSON.stringify({ x: { dtype: 'float32', dims: [1, 1, 1, 2], data: [1, 2] } }));
    const mix = join(dir, 'mix.txt');
    writeFileSync(mix, `# model input weight\nmlp in.json 3\naffine a.json 1\n`);
    const run = async () => {
      const r = await cli(['load', '--mix', mix, '--concurrency', '1', '--duration', '0.5', '--json', ...conn]);
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout);
    };
    const s = await run();
    expect(s).toMatchObject({
      lost: 0,
      errored: {},
      mix: [
        { model: 'mlp', weight: 3 },
        { model: 'affine', weight: 1 },
      ],
    });
    expect(s.errored).toEqual({});
    expect(s.models.mlp.ok + s.models.affine.ok).toBe(s.ok);
    expect(s.models.mlp.ok).toBeGreaterThan(s.models.affine.ok);
    expect(s.models.affine.ok).toBeGreaterThan(0);
  });

  it('--zipf S over the deployed models (inputs from their signatures) prints a per-model table', async () => {
    const r = await cli(['load', '--zipf', '1.1', '--concurrency', '2', '--duration', '0.5', ...conn]);
    expect(r.stderr).not.toContain('error');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('load 2 models');
    expect(r.stdout).toMatch(/^mlp\s+\d+/m);
    expect(r.stdout).toMatch(/^affine\s+\d+/m);
  });

  it('refuses a model together with --mix, and no model without one (BAD_REQUEST)', async () => {
    for (const args of [['mlp', '--zipf', '1'], []]) {
      const r = await cli(['load', ...args, '--duration', '0.1', '--json', ...conn]);
      expect(r.code).toBe(2);
      expect(JSON.parse(r.stdout).error.code).toBe('BAD_REQUEST');
    }
  });
});
