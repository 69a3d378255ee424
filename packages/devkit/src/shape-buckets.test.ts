// Integration (real nats-server, head, worker and onnxruntime): a BERT-like encoder (tiny-encoder,
// int64 input_ids / attention_mask [batch, seq]) deployed with shape buckets `seq ≤ 16 / 64`.
// Traffic at seq 7, 12 and 40 is profiled per bucket, not per exact length: exactly two profiles
// are stored (seq 16 and 64), each exact length counts toward its bucket and takes the bucket's
// batching (shown in `status`), requests still run unpadded at their own length (outputs equal to
// in-process onnxruntime), and lengths never share a batch with another length.
import * as ort from 'onnxruntime-node';
import { shapeKey, type ClusterStatus, type LoadedReplicaState, type ModelSignature } from '@flotilla/protocol';
import type { Tensor } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

/** One sequence of `seq` positions, the last `pad` of them padding (mask 0, arbitrary ids). */
function sentence(seq: number, pad: number, seed: number): { input_ids: Tensor; attention_mask: Tensor } {
  const ids = BigInt64Array.from({ length: seq }, (_, i) => BigInt((seed * 131 + i * 37) % 256));
  const mask = BigInt64Array.from({ length: seq }, (_, i) => (i < seq - pad ? 1n : 0n));
  return {
    input_ids: { dtype: 'int64', dims: [1, seq], data: ids },
    attention_mask: { dtype: 'int64', dims: [1, seq], data: mask },
  };
}
const bucketKey = (seq: number) => shapeKey({ input_ids: [seq], attention_mask: [seq] });
const replicaOf = (status: ClusterStatus, model: string): LoadedReplicaState | undefined =>
  status.workers.flatMap((w) => w.replicas).find((r): r is LoadedReplicaState => r.model === model && r.state === 'ready');

describe('shape buckets (profile.buckets) on a transformer encoder', () => {
  let cluster: LocalCluster;
  let session: ort.InferenceSession;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ workers: 1 });
    session = await ort.InferenceSession.create(sampleModelPath('tiny-encoder'));
  }, 30_000);
  afterAll(async () => {
    await session?.release();
    await cluster?.stop();
  });

  it('profiles per bucket, batches per bucket, runs each request at its own length', async () => {
    const client = cluster.client();
    await client.deploy(sampleModelPath('tiny-encoder'), 'enc', {
      device: 'cpu',
      profile: { budgetMs: 600, buckets: { seq: [16, 64] } },
    });
    const signature: ModelSignature = {
      inputs: [
        { name: 'input_ids', dtype: 'int64', shape: ['batch', 'seq'] },
        { name: 'attention_mask', dtype: 'int64', shape: ['batch', 'seq'] },
      ],
      outputs: [{ name: 'logits', dtype: 'float32', shape: ['batch', 2] }],
      batchAxis: true,
    };
    expect((await client.describe('enc')).signature).toEqual(signature);
    const before = replicaOf(await client.status(), 'enc')!;
    expect(before.profile).toMatchObject({ source: 'per-shape', dynamicDims: ['seq'] });
    expect(before.profile!.reason).toMatch(/^dynamic dims seq: profiled per bucket \(seq ≤ 16\/64\)/);

    // Three callers (seq 7 and 12: bucket 16; seq 40: bucket 64) until both buckets are profiled.
    const shapes = () => cluster.workers[0]!.replicaStates().find((r) => r.model === 'enc')?.profile?.shapes ?? [];
    const settled = () => [16, 64].every((b) => shapes().find((s) => s.shape === bucketKey(b))?.state === 'measured');
    const sent: Record<number, number> = { 7: 0, 12: 0, 40: 0 };
    let seed = 1;
    const caller = async (seq: number) => {
      while (!settled()) {
        const y = await client.infer('enc', sentence(seq, 2, seed++), { timeoutMs: 2000 });
        sent[seq]!++;
        expect(y.logits!.dims).toEqual([1, 2]);
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([caller(7), caller(12), caller(40)]),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('buckets not profiled within 30 s')), 30_000))),
    ]).finally(() => clearTimeout(timer));

    // Exactly the two buckets are tracked and stored; no exact length has a profile of its own.
    expect(
      shapes()
        .map((s) => s.shape)
        .sort(),
    ).toEqual([bucketKey(16), bucketKey(64)].sort());
    const requests = new Map(shapes().map((s) => [s.shape, s.requests]));
    expect(requests.get(bucketKey(16))).toBe(sent[7]! + sent[12]!);
    expect(requests.get(bucketKey(64))).toBe(sent[40]!);
    const profiles = await client.profiles('enc');
    expect(profiles.map((p) => shapeKey(p.shape!)).sort()).toEqual([bucketKey(16), bucketKey(64)].sort());
    const byKey = new Map(profiles.map((p) => [shapeKey(p.shape!), p]));

    // `status` (through the head) shows each bucket's batching, as its profile chose.
    const rep = await until(
      async () => {
        const r = replicaOf(await client.status(), 'enc');
        return r?.profile?.shapes?.filter((s) => s.state === 'measured').length === 2 ? r : undefined;
      },
      { what: 'status shows both buckets profiled' },
    );
    for (const s of rep.profile!.shapes!) {
      const p = byKey.get(s.shape)!;
      expect(s).toMatchObject({ maxBatchSize: p.chosen.maxBatchSize, maxQueueDelayMs: p.chosen.maxQueueDelayMs });
    }
    expect(rep.profile!.replicaBytes).toBe(Math.max(...profiles.map((p) => p.memory.replicaBytes)));

    // Lengths sent together: each request runs at its own length, batched only with its own length,
    // within its bucket's batch limit, with outputs equal to in-process onnxruntime.
    const lengths = [7, 12, 40, 7, 12, 40, 7, 12, 40, 12];
    const xs = lengths.map((seq, i) => sentence(seq, i % 3, 500 + i));
    const ys = await Promise.all(xs.map((x) => client.inferWithMeta('enc', x)));
    let worst = 0;
    for (const [i, x] of xs.entries()) {
      const { outputs, meta } = ys[i]!;
      const seq = lengths[i]!;
      expect(meta.batch).toBeLessThanOrEqual(lengths.filter((l) => l === seq).length);
      expect(meta.batch).toBeLessThanOrEqual(byKey.get(bucketKey(seq <= 16 ? 16 : 64))!.chosen.maxBatchSize);
      const feeds = {
        input_ids: new ort.Tensor('int64', x.input_ids.data as BigInt64Array, x.input_ids.dims),
        attention_mask: new ort.Tensor('int64', x.attention_mask.data as BigInt64Array, x.attention_mask.dims),
      };
      const want = (await session.run(feeds)).logits!.data as Float32Array;
      const got = outputs.logits!.data as Float32Array;
      expect(outputs.logits!.dims).toEqual([1, 2]);
      for (let j = 0; j < 2; j++) worst = Math.max(worst, Math.abs(got[j]! - want[j]!));
    }
    expect(worst).toBeLessThanOrEqual(1e-5);
    if (process.env.FLOTILLA_TEST_VERBOSE) {
      process.stderr.write(
        `requests before both buckets settled: seq 7 ${sent[7]}, 12 ${sent[12]}, 40 ${sent[40]}; ${profiles
          .map((p) => `${shapeKey(p.shape!)} ${p.tookMs} ms → batch ${p.chosen.maxBatchSize}/${p.chosen.maxQueueDelayMs} ms`)
          .join('; ')}; batches ${ys.map((y) => y.meta.batch).join(',')}; max |Δ| vs onnxruntime ${worst.toExponential(1)}\n`,
      );
    }
  }, 60_000);
});
