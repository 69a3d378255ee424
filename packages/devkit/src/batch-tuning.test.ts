// Integration: a real nats-server, a head, a worker process and real onnxruntime sessions. A
// replica whose deployment left the batch size to it tunes that size on its own traffic
// (worker/batch-tuner.ts): where a smaller batch serves each item quicker it moves down, however
// the profile (here: none, the default of 8) rated the sizes. A deployment that set maxBatchSize
// keeps it. The model makes larger batches dearer per item by construction: each item's output
// sums over its differences from every item of its batch, each through three dense layers, so a
// batch of B costs B² × 2.2 M multiply-adds (8 items: 138 M, 4 items: a quarter of that for half
// the items).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { FlotillaClient, Tensor } from '@flotilla/client';
import { GraphBuilder, randomFloats } from '@flotilla/sample-models';
import { ProcessCluster } from './process-cluster.js';
import type { WorkerProcess } from './worker-process.js';

/**
 * y[i] = Σ_j Σ_k f(x_i − x_j)_k: x [N, 64], the pairwise differences [N, N, 64] through three
 * dense layers (64 → 1,024 → 1,024 → 1,024, ReLU between), summed → [N, 1, 1].
 */
function buildPairwise(): Uint8Array {
  const g = new GraphBuilder('pairwise');
  const x = g.input('x', ['N', 64]);
  const a = g.node('Unsqueeze', [x, g.ints([1])]);
  const b = g.node('Unsqueeze', [x, g.ints([0])]);
  let h = g.node('Sub', [a, b]);
  let width = 64;
  for (const [i, next] of [1024, 1024, 1024].entries()) {
    h = g.node('MatMul', [h, g.weight([width, next], randomFloats(width * next, 3 + i, Math.sqrt(1 / width)))]);
    if (i < 2) h = g.node('Relu', [h]);
    width = next;
  }
  g.node('ReduceSum', [h, g.ints([1, 2])], { keepdims: 1 }, 'y');
  g.output('y', ['N', 1, 1]);
  return g.toBytes();
}

const CALLERS = 32;
const one = (): Tensor => ({ dtype: 'float32', dims: [1, 64], data: randomFloats(64, 5) });

let dir: string;
let cluster: ProcessCluster;
let worker: WorkerProcess;
let client: FlotillaClient;

beforeAll(async () => {
  dir = mkdtempSync(join(os.tmpdir(), 'flotilla-tuning-'));
  const path = join(dir, 'pairwise.onnx');
  writeFileSync(path, buildPairwise());
  cluster = await ProcessCluster.start({ cluster: 'tuning', workerEnv: { FLOTILLA_LOG_LEVEL: 'info' } });
  ({ worker, client } = cluster);
  // No profile: both start at the default of 8; only 'set' was given it by its deployment.
  await client.deploy(path, 'left', { device: 'cpu', profile: { enabled: false } });
  await client.deploy(path, 'set', { device: 'cpu', profile: { enabled: false }, batching: { maxBatchSize: 8 } });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** CALLERS closed-loop callers for `ms`: the batch size each request ran in. */
async function load(model: string, ms: number): Promise<number[]> {
  const sizes: number[] = [];
  const end = Date.now() + ms;
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (Date.now() < end) sizes.push((await client.inferWithMeta(model, { x: one() })).meta.batch);
    }),
  );
  return sizes;
}

const histogram = (sizes: number[]) => sizes.reduce<Record<number, number>>((h, s) => ((h[s] = (h[s] ?? 0) + 1), h), {});

it('moves a replica whose batch size was left to it to the size that serves each item quicker; a size set by the deployment stays', async () => {
  for (const model of ['left', 'set']) await client.infer(model, { x: one() }); // warm
  // Under load, batches fill at the cap: 8 at first, then what the tuner compares and keeps.
  await load('left', 3000);
  const left = await load('left', 1500);
  const set = await load('set', 1500);
  const tuned = worker
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes("on this replica's traffic"))
    .map((l) => JSON.parse(l) as { model: string; msg: string });
  console.log(
    `batch-tuning: ${tuned.map((t) => `${t.model}: ${t.msg}`).join('; ')}; then left to the replica ${JSON.stringify(histogram(left))}; set to 8 ${JSON.stringify(histogram(set))} (requests per batch size)`,
  );
  expect(left.length).toBeGreaterThan(0);
  expect(Math.max(...left)).toBeLessThanOrEqual(4);
  expect(tuned.filter((t) => t.model === 'left').length).toBeGreaterThan(0);
  expect(tuned.filter((t) => t.model === 'set')).toEqual([]);
  expect(set.filter((s) => s === 8).length).toBeGreaterThan(set.length / 2);
  // The heartbeats say so too (`status`): the tuned replica its batch key's size, the other none.
  const replicas = async () => (await client.status()).workers.flatMap((w) => w.replicas);
  const deadline = Date.now() + 5_000;
  let seen = await replicas();
  const tunedOf = (model: string) => {
    const r = seen.find((x) => x.model === model);
    return r && r.state !== 'loading' ? r.tunedBatches : undefined;
  };
  while (!tunedOf('left')?.some((t) => t.maxBatchSize <= 4) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    seen = await replicas();
  }
  expect(tunedOf('left')).toEqual([{ shape: 'x:64', from: 8, maxBatchSize: Math.max(...left), state: expect.any(String) }]);
  expect(tunedOf('set')).toBeUndefined();
}, 60_000);
