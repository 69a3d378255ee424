// Integration: a model with dynamic H and W (dynamic-hw-convnet) is profiled per input shape in
// the background as traffic brings new shapes, while its replica keeps answering within deadlines;
// each shape's profile is stored under its own key, its batching shows in `status`, placement
// is charged the largest footprint, and `profile.shapes` (deploy --sample-input) profiles at load.
import * as ort from 'onnxruntime-node';
import { shapeKey, type ClusterStatus, type LoadedReplicaState } from '@flotilla/protocol';
import type { Tensor } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

const image = (h: number, w: number, seed: number): Tensor => ({
  dtype: 'float32',
  dims: [1, 3, h, w],
  data: randomFloats(3 * h * w, seed),
});
const replicaOf = (status: ClusterStatus, model: string): LoadedReplicaState | undefined =>
  status.workers.flatMap((w) => w.replicas).find((r): r is LoadedReplicaState => r.model === model && r.state === 'ready');
const percentile = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;

describe('profiles per input shape (dynamic H and W)', () => {
  let cluster: LocalCluster;
  let session: ort.InferenceSession;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ workers: 1 });
    session = await ort.InferenceSession.create(sampleModelPath('dynamic-hw-convnet'));
  }, 30_000);
  afterAll(async () => {
    await session?.release();
    await cluster?.stop();
  });

  const A = { h: 32, w: 48 };
  const B = { h: 64, w: 64 };
  const keyOf = (s: { h: number; w: number }) => shapeKey({ x: [3, s.h, s.w] });

  it('profiles each new shape in the background while serving within deadlines; batching per shape in status', async () => {
    const client = cluster.client();
    await client.deploy(sampleModelPath('dynamic-hw-convnet'), 'dyn', { device: 'cpu', profile: { budgetMs: 600 } });
    // Before traffic: no profile, and the replica says why.
    expect(await client.profiles('dyn')).toEqual([]);
    const before = replicaOf(await client.status(), 'dyn')!;
    expect(before.profile).toMatchObject({ source: 'per-shape', dynamicDims: ['H', 'W'], replicaBytes: 0 });
    expect(before.profile!.reason).toMatch(/^dynamic dims H, W: profiled per shape as traffic arrives/);

    // Two callers send shapes A and B back to back (2 s deadline each) until both shapes are profiled.
    const state = () => cluster.workers[0]!.replicaStates().find((r) => r.model === 'dyn')?.profile?.shapes ?? [];
    const settled = () => [A, B].every((s) => state().find((x) => x.shape === keyOf(s))?.state === 'measured');
    const latencies: number[] = [];
    let duringProfile = 0;
    let seed = 1;
    const caller = async (s: { h: number; w: number }) => {
      while (!settled()) {
        const x = image(s.h, s.w, seed++);
        const profiling = state().some((e) => e.state === 'profiling');
        const t0 = performance.now();
        const y = await client.infer('dyn', { x }, { timeoutMs: 2000 });
        latencies.push(performance.now() - t0);
        if (profiling) duringProfile++;
        expect(y.y!.dims).toEqual([1, 1, s.h / 4, s.w / 4]);
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([caller(A), caller(B)]),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('shapes not profiled within 30 s')), 30_000))),
    ]).finally(() => clearTimeout(timer));
    const profiledInMs = performance.now() - t0;
    expect(duringProfile).toBeGreaterThan(0); // requests were answered while a profile ran
    expect(Math.max(...latencies)).toBeLessThan(2000);

    const profiles = await client.profiles('dyn');
    const byShape = new Map(profiles.map((p) => [p.shape ? shapeKey(p.shape) : '-', p]));
    expect([...byShape.keys()].sort()).toEqual([keyOf(A), keyOf(B)].sort());
    for (const p of profiles) {
      expect(p.rows[0]).toMatchObject({ batch: 1 });
      expect(p.rows.every((r) => r.itemsPerSec > 0)).toBe(true);
    }

    // Batching per shape, as the head reports it, matches each shape's profile; the charge is the largest footprint.
    const rep = await until(
      async () => {
        const r = replicaOf(await client.status(), 'dyn');
        return r?.profile?.shapes?.filter((s) => s.state === 'measured').length === 2 ? r : undefined;
      },
      { what: 'status shows both shapes profiled' },
    );
    for (const s of rep.profile!.shapes!) {
      const p = byShape.get(s.shape)!;
      expect(s).toMatchObject({
        maxBatchSize: p.chosen.maxBatchSize,
        maxQueueDelayMs: p.chosen.maxQueueDelayMs,
        replicaBytes: p.memory.replicaBytes,
      });
    }
    const footprint = Math.max(...profiles.map((p) => p.memory.replicaBytes));
    expect(rep.profile!.replicaBytes).toBe(footprint);
    // The worker's own charge (its ledger, what eviction sees) grows to the profiled footprint when
    // that exceeds what it charged at load (it never shrinks below the load's measured figure).
    const loaded = (await client.events({ model: 'dyn' })).find((e) => e.type === 'loaded' && e.replica === rep.id)!;
    const expected = Math.max(loaded.bytes!, footprint);
    const charged = await until(
      async () => {
        const st = await client.status();
        const w = st.workers.find((x) => x.replicas.some((r) => r.id === rep.id))!;
        const r = w.replicas.find((x) => x.id === rep.id)!;
        return r.bytes >= expected ? { r, w } : undefined;
      },
      { what: 'the replica charged its profiled footprint' },
    );
    expect(charged.r.bytes).toBe(expected);
    expect(charged.w.devices.find((d) => d.id === charged.r.device)!.usedBytes).toBeGreaterThanOrEqual(expected);

    // Outputs equal in-process onnxruntime, for both shapes, with several requests batched together.
    for (const s of [A, B]) {
      const xs = [1, 2, 3].map((i) => image(s.h, s.w, 100 + i));
      const ys = await Promise.all(xs.map((x) => client.infer('dyn', { x })));
      for (const [i, x] of xs.entries()) {
        const want = (await session.run({ x: new ort.Tensor('float32', x.data as Float32Array, x.dims) })).y!.data as Float32Array;
        const got = ys[i]!.y!.data as Float32Array;
        expect(got.length).toBe(want.length);
        let worst = 0;
        for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j]! - want[j]!));
        expect(worst).toBeLessThanOrEqual(1e-5);
      }
    }
    if (process.env.FLOTILLA_TEST_VERBOSE) {
      process.stderr.write(
        `shapes profiled in ${profiledInMs.toFixed(0)} ms of traffic; per shape: ${profiles
          .map(
            (p) =>
              `${shapeKey(p.shape!)} ${p.tookMs} ms → batch ${p.chosen.maxBatchSize}/${p.chosen.maxQueueDelayMs} ms, ${p.memory.replicaBytes} B`,
          )
          .join(
            '; ',
          )}\nlatency over ${latencies.length} requests (${duringProfile} during a profile): p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms\n`,
      );
    }
  }, 60_000);

  it('profile.shapes (deploy --sample-input) profiles that shape at load, ahead of traffic; stored shapes are reused', async () => {
    const client = cluster.client();
    const C = { h: 40, w: 24 };
    await client.deploy(sampleModelPath('dynamic-hw-convnet'), 'dyn-sample', {
      device: 'cpu',
      profile: { budgetMs: 600, shapes: [{ x: [1, 3, C.h, C.w] }] },
    });
    // Ready means loaded: the sample's shape was measured at load, the first test's shapes come from the store.
    const r = replicaOf(await client.status(), 'dyn-sample')!;
    const shapes = new Map(r.profile!.shapes!.map((s) => [s.shape, s]));
    expect(shapes.get(keyOf(C))).toMatchObject({ state: 'measured', requests: 0 });
    expect(shapes.get(keyOf(C))!.maxBatchSize).toBeGreaterThanOrEqual(1);
    expect(shapes.get(keyOf(A))).toMatchObject({ state: 'cache' });
    expect(shapes.get(keyOf(B))).toMatchObject({ state: 'cache' });
    expect(r.processed).toBe(0);
    // Thread settings were measured at load too, at the sample shape's chosen batch (the session serves with them).
    expect(r.profile!.threads).toMatchObject({ source: 'profile' });
    const loaded = (await client.events({ model: 'dyn-sample' })).find((e) => e.type === 'loaded')!;
    expect(loaded.data).toMatchObject({ chargedBy: 'profile' });
    expect((await client.profiles('dyn-sample')).map((p) => shapeKey(p.shape!)).sort()).toEqual([keyOf(A), keyOf(B), keyOf(C)].sort());
    const y = await client.infer('dyn-sample', { x: image(C.h, C.w, 7) });
    expect(y.y!.dims).toEqual([1, 1, C.h / 4, C.w / 4]);
  }, 60_000);
});
