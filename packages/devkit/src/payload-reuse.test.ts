// Integration: a replica hands each request's payload buffer back to the worker's pool once it has
// answered it (bus payload-pool.ts), and the next requests are gathered into those buffers: every
// answer must still be its own request's (a real nats-server, head and worker, onnxruntime).
// `affine` answers y = 2x + 1, so each reply is checked against its own request's input; 64
// callers at once, with and without headers, fill batches of up to 8 from reused buffers.
import { randomUUID } from 'node:crypto';
import { payloadPool } from '@flotilla/bus';
import type { FlotillaClient, Tensor } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';

let cluster: LocalCluster;
let client: FlotillaClient;

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1 });
  client = cluster.client();
  await client.deploy(sampleModelPath('affine'), 'affine', { device: 'cpu', batching: { maxBatchSize: 8, maxQueueDelayMs: 2 } });
}, 120_000);

afterAll(async () => {
  await client?.close();
  await cluster?.stop();
});

/** A 3×64×64 image (49,152 bytes: its request spans the worker's 64 KiB socket reads as often as not). */
const image = (seed: number): Tensor => ({ dtype: 'float32', dims: [1, 3, 64, 64], data: randomFloats(3 * 64 * 64, seed) });

/** How many of the answers to `seeds` are not 2x + 1 of their own request's x. */
async function wrongAnswers(seeds: number[], traced: boolean): Promise<number> {
  const outs = await Promise.all(
    seeds.map((seed) =>
      client.infer(
        'affine',
        { x: image(seed) },
        traced ? { traceparent: `00-${randomUUID().replaceAll('-', '')}-${'0123456789abcdef'}-01` } : {},
      ),
    ),
  );
  let wrong = 0;
  outs.forEach((out, i) => {
    const x = image(seeds[i]!).data as Float32Array;
    const y = out.y!.data as Float32Array;
    if (y.length !== x.length || x.some((v, j) => Math.abs(y[j]! - (2 * v + 1)) > 1e-5)) wrong++;
  });
  return wrong;
}

describe('request payload buffers, reused', () => {
  it('are taken back once answered and gather later requests, every answer its own request’s', async () => {
    const pool = payloadPool();
    const before = pool.stats();
    let wrong = 0;
    for (let round = 0; round < 6; round++) {
      const seeds = Array.from({ length: 64 }, (_, i) => 1000 * round + i);
      wrong += await wrongAnswers(seeds, round % 2 === 1);
    }
    expect(wrong).toBe(0);
    const after = pool.stats();
    // 384 requests of 49 KB: many spanned reads; the replica gave their buffers back and later ones reused them.
    expect(after.recycled - before.recycled).toBeGreaterThan(50);
    expect(after.reused - before.reused).toBeGreaterThan(50);
  }, 60_000);
});
