// Integration: a replica told to pad its batches (a deployment's `batching.padBatches`, or a
// profile that measured a costly change of batch size, as onnxruntime's cuDNN convolutions have
// on CUDA) runs smaller batches padded with zero rows to maxBatchSize and answers every request
// with its own rows, equal to in-process onnxruntime, for fixed-shape and transformer-shaped
// (int64 ids and mask, dynamic sequence) models; its state says so; the histogram counts real items.
import * as ort from 'onnxruntime-node';
import type { Tensor } from '@flotilla/client';
import type { LoadedReplicaState } from '@flotilla/protocol';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';

let cluster: LocalCluster;
beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1 });
}, 60_000);
afterAll(() => cluster?.stop());

async function inProcess(model: string, feeds: Record<string, Tensor>): Promise<Record<string, number[]>> {
  const s = await ort.InferenceSession.create(sampleModelPath(model as 'mlp'), { executionProviders: ['cpu'] });
  try {
    const out = await s.run(
      Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims)])),
    );
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, Array.from(t.data as Float32Array)]));
  } finally {
    await s.release();
  }
}

async function replicaOf(model: string): Promise<LoadedReplicaState> {
  const st = await cluster.client().status();
  return st.workers.flatMap((w) => w.replicas).find((r) => r.model === model && r.state === 'ready') as LoadedReplicaState;
}

/** Deploys `model` on the CPU, unprofiled, padding its batches to `maxBatchSize` (a 200 ms queue delay gathers them). */
async function deployPadded(model: 'mlp' | 'tiny-encoder', name: string, maxBatchSize: number): Promise<void> {
  await cluster.client().deploy(sampleModelPath(model), name, {
    device: 'cpu',
    profile: { enabled: false },
    batching: { maxBatchSize, maxQueueDelayMs: 200, padBatches: true },
  });
}

describe('padded batches', () => {
  it('mlp: three requests (1, 2 and 1 rows) run as one batch of 8 rows; each gets its own outputs', async () => {
    const c = cluster.client();
    await deployPadded('mlp', 'pad-mlp', 8);
    expect((await replicaOf('pad-mlp')).batching).toMatchObject({ maxBatchSize: 8, padTo: 8 });
    const inputs = [1, 2, 1].map((n, i): Record<string, Tensor> => ({
      x: { dtype: 'float32', dims: [n, 16], data: randomFloats(n * 16, 40 + i) },
    }));
    const got = await Promise.all(inputs.map((x) => c.inferWithMeta('pad-mlp', x)));
    for (const [i, r] of got.entries()) {
      expect(r.outputs.y!.dims).toEqual([inputs[i]!.x!.dims[0], 4]);
      const want = await inProcess('mlp', inputs[i]!);
      Array.from(r.outputs.y!.data as Float32Array).forEach((v, j) => expect(v).toBeCloseTo(want.y![j]!, 5));
    }
    expect(got.map((r) => r.meta.batch)).toEqual([4, 4, 4]);
    // The histogram comes with the worker's next heartbeat.
    let histogram: Record<string, number> = {};
    for (let i = 0; i < 40 && Object.keys(histogram).length === 0; i++) {
      histogram = (await replicaOf('pad-mlp')).batchHistogram;
      if (Object.keys(histogram).length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(histogram).toEqual({ '4': 1 });
  }, 60_000);

  it('tiny-encoder (int64 ids and mask, dynamic sequence): padded rows change nobody’s answer', async () => {
    const c = cluster.client();
    await deployPadded('tiny-encoder', 'pad-enc', 4);
    const seq = 12;
    const inputs = [0, 1].map((i): Record<string, Tensor> => ({
      input_ids: { dtype: 'int64', dims: [1, seq], data: BigInt64Array.from({ length: seq }, (_, j) => BigInt((j * 7 + i * 13) % 256)) },
      attention_mask: { dtype: 'int64', dims: [1, seq], data: BigInt64Array.from({ length: seq }, (_, j) => (j < seq - i * 3 ? 1n : 0n)) },
    }));
    const got = await Promise.all(inputs.map((x) => c.infer('pad-enc', x)));
    for (const [i, r] of got.entries()) {
      const want = await inProcess('tiny-encoder', inputs[i]!);
      Array.from(r.logits!.data as Float32Array).forEach((v, j) => expect(v).toBeCloseTo(want.logits![j]!, 4));
    }
    expect((await replicaOf('pad-enc')).batching).toMatchObject({ maxBatchSize: 4, padTo: 4 });
  }, 60_000);
});
