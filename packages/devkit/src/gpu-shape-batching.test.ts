// Integration: on a GPU a dynamic-shape model's requests run one at a time until their shape's
// profile is in (the replica's default where no profile chose: batcher.ts defaultMaxBatchSize),
// as onnxruntime's CUDA convolutions rebuild their plan whenever the batch size changes and
// batches of whatever queued would pay that nearly every run; on a CPU the same burst batches.
// The GPU is the inventory override served by the CPU provider (the code path, not CUDA).
import type { LoadedReplicaState } from '@flotilla/protocol';
import type { Tensor } from '@flotilla/client';
import { silentLogger } from '@flotilla/bus';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';

const GiB = 2 ** 30;
const image = (seed: number): Tensor => ({ dtype: 'float32', dims: [1, 3, 64, 64], data: randomFloats(3 * 64 * 64, seed) });

describe('batching of a shape not yet profiled, GPU vs CPU', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({
      workers: 1,
      worker: {
        gpuProviders: ['cpu'],
        inventory: { gpus: [{ index: 0, vendor: 'NVIDIA', model: 'stand-in GPU', vramTotalBytes: 8 * GiB, vramFreeBytes: 8 * GiB }] },
      },
      logger: silentLogger(),
    });
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  const replica = (model: string) =>
    cluster.workers[0]!.replicaStates().find((r): r is LoadedReplicaState => r.model === model && r.state === 'ready')!;

  it('a burst on the GPU runs one request per batch while the shape is unprofiled; on the CPU it batches', async () => {
    const client = cluster.client();
    // A long profile budget: the shape cannot be profiled before the bursts are answered.
    const profile = { budgetMs: 5000 };
    await client.deploy(sampleModelPath('conv-classifier'), 'cls-gpu', { device: 'gpu', allowFallback: false, profile });
    await client.deploy(sampleModelPath('conv-classifier'), 'cls-cpu', { device: 'cpu', profile });
    expect(replica('cls-gpu').device).toBe('gpu:0');
    expect(replica('cls-cpu').device).toBe('cpu');
    let seed = 1;
    const burst = (model: string) =>
      Promise.all(Array.from({ length: 32 }, () => client.infer(model, { x: image(seed++) }, { timeoutMs: 10_000 })));
    for (const model of ['cls-gpu', 'cls-cpu']) {
      for (let i = 0; i < 2; i++) for (const y of await burst(model)) expect(y.logits!.dims[0]).toBe(1);
    }
    const gpu = replica('cls-gpu');
    const cpu = replica('cls-cpu');
    // Still unprofiled: what ran is the unprofiled batching.
    for (const r of [gpu, cpu]) expect(r.profile?.shapes?.[0]?.state).not.toMatch(/^(measured|cache)$/);
    expect(gpu.batching.maxBatchSize).toBe(1);
    expect(cpu.batching.maxBatchSize).toBe(8);
    expect(Object.keys(gpu.batchHistogram ?? {})).toEqual(['1']);
    expect(gpu.batchHistogram!['1']).toBe(64);
    expect(Object.keys(cpu.batchHistogram ?? {}).some((k) => Number(k) > 1)).toBe(true);
  }, 60_000);
});
