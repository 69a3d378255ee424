// End to end through the CLI: `up --memory-budget 100MiB --eviction lru` with a worker process
// whose budget fits two of three models; `deploy`, `infer`, `events --json`, `status --json`
// show the LRU eviction, and `infer` of the evicted model is answered after a transparent reload.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sampleModelPath } from '@flotilla/sample-models';
import { freePort, runCli, startUp, stopUp } from './testing/run-cli.js';

const MiB = 1024 * 1024;
let up: ChildProcess | undefined;
let env: NodeJS.ProcessEnv;
const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-mem-'));
const input = join(dir, 'x.json');

beforeAll(async () => {
  const port = await freePort();
  up = (
    await startUp([
      '--port',
      String(port),
      '--workers',
      '1',
      '--cluster',
      'mem',
      '--memory-budget',
      '100MiB',
      '--eviction',
      'lru',
      '--cache-dir',
      join(dir, 'cache'),
    ])
  ).proc;
  env = { FLOTILLA_NATS: `nats://127.0.0.1:${port}`, FLOTILLA_CLUSTER: 'mem' };
  writeFileSync(input, JSON.stringify({ x: { dtype: 'float32', dims: [1, 16], data: Array.from({ length: 16 }, (_, i) => i / 16) } }));
}, 90_000);

afterAll(async () => {
  await stopUp(up);
  rmSync(dir, { recursive: true, force: true });
});

const json = async (args: string[]) => {
  const r = await runCli([...args, '--json'], env);
  expect([args.join(' '), r.code, r.stderr]).toEqual([args.join(' '), 0, '']);
  return JSON.parse(r.stdout);
};
const deploy = (name: string) =>
  json(['deploy', sampleModelPath('mlp'), '--name', name, '--device', 'cpu', '--memory', String(40 * MiB), '--no-profile']);
const infer = (name: string) => json(['infer', name, '--input', input]);

it('evicts the least recently used model, reports it, and brings it back on request', async () => {
  await deploy('a');
  await deploy('b');
  const first = await infer('a');
  await infer('b');
  await infer('a'); // a is now the most recently used: LRU picks b
  await deploy('c');

  const ls: Array<{ spec: { name: string }; ready: number }> = await json(['ls']);
  expect(Object.fromEntries(ls.map((d) => [d.spec.name, d.ready]))).toEqual({ a: 1, b: 0, c: 1 });
  const status = await json(['status']);
  expect(status.workers).toHaveLength(1);
  const device = status.workers[0].devices[0];
  expect(device).toMatchObject({ id: 'cpu', kind: 'cpu', budgetBytes: 100 * MiB, usedBytes: 80 * MiB, policy: 'lru' });
  expect(device.capacityBytes).toBeGreaterThan(device.budgetBytes);
  expect(device.models.map((m: { name: string }) => m.name).sort()).toEqual(['a', 'c']);
  expect(device.models[0].bytes).toBe(40 * MiB);

  const events: Array<{ type: string; model: string; worker: string; device: string; bytes: number; reason: string; at: number }> =
    await json(['events']);
  const evicted = events.filter((e) => e.type === 'evicted');
  expect(evicted).toHaveLength(1);
  expect(evicted[0]).toMatchObject({ model: 'b', device: 'cpu', bytes: 40 * MiB, worker: status.workers[0].id });
  expect(evicted[0]!.reason).toMatch(/^lru: make room for 'c'/);
  expect(evicted[0]!.at).toBeGreaterThan(0);
  expect(events.filter((e) => e.type === 'loaded').map((e) => e.model)).toEqual(['a', 'b', 'c']);

  // b was evicted: the request is still answered (the CLI's SDK asks the head to bring it back).
  const again = await infer('b');
  expect(again.outputs.y.data).toEqual(first.outputs.y.data); // same model file, same input
  const after: typeof events = await json(['events']);
  expect(after.filter((e) => e.type === 'evicted').map((e) => e.model)).toEqual(['b', 'a']); // a: least recently used now
  const human = await runCli(['events'], env);
  expect(human.stdout).toMatch(/evicted/);
}, 120_000);
