// Integration: the first load of a model on a device class profiles it for real (batch sweep,
// then onnxruntime thread settings on CPU), stores the profile in KV, and the replica runs with
// what it chose; the next load of the same model reuses the stored profile and opens its session
// already tuned; a deployment's or a worker's thread settings override the profile's.
import { estimateReplicaBytes, type ClusterStatus, type LoadedReplicaState } from '@flotilla/protocol';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';

const x = { x: { dtype: 'float32' as const, dims: [1, 1024], data: randomFloats(1024, 1) } };
const replicaOf = (status: ClusterStatus, model: string): LoadedReplicaState =>
  status.workers.flatMap((w) => w.replicas).find((r): r is LoadedReplicaState => r.model === model && r.state === 'ready')!;

describe('profiling on first load', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ workers: 1 });
  }, 30_000);
  afterAll(() => cluster?.stop());

  it('measures batch sizes and thread settings, stores them, and serves with the choice; the next load reuses them', async () => {
    const client = cluster.client();
    // A budget the compile comparison fits in even on a loaded machine (it runs when 4 creates take ≤ the budget).
    const spec = { device: 'cpu' as const, profile: { budgetMs: 2000 } };
    await client.deploy(sampleModelPath('wide-mlp'), 'first', spec);
    const [profile] = await client.profiles('first');
    if (process.env.FLOTILLA_TEST_VERBOSE) process.stderr.write(`${JSON.stringify(profile, null, 1)}\n`);
    expect(profile).toBeDefined();
    expect(profile!.rows.length).toBeGreaterThanOrEqual(2);
    expect(profile!.rows[0]).toMatchObject({ batch: 1 });
    const usable = cluster.workers[0]!.inventory.cpu.usableCores!;
    expect(usable).toBeGreaterThanOrEqual(1);
    const t = profile!.threads!;
    expect(t).toBeDefined();
    // The sweep ran with every usable core; each row is a setting measured at the chosen batch size.
    expect(t.rows[0]).toMatchObject({ intraOp: usable, mode: 'sequential', batch: profile!.chosen.maxBatchSize });
    expect(t.rows.length).toBeGreaterThanOrEqual(Math.min(2, usable));
    for (const r of t.rows) expect(r.itemsPerSec).toBeGreaterThan(0);
    expect(t.rows.some((r) => r.intraOp === t.intraOp && r.mode === t.mode)).toBe(true);
    expect(t.reason).toMatch(/intra-op/);

    const first = replicaOf(await client.status(), 'first');
    expect(first.profile).toMatchObject({ source: 'measured', threads: { intraOp: t.intraOp, mode: t.mode, source: 'profile' } });
    expect(first.batching.maxBatchSize).toBe(profile!.chosen.maxBatchSize);
    expect(first.profile!.deviceClass).toBe(profile!.deviceClass);
    const y = await client.infer('first', x);
    expect(y.y!.dims).toEqual([1, 10]);

    // The first load compared creating from the compile cache with a plain create.
    const c = profile!.compile!;
    expect(c.plainCreateMs).toBeGreaterThan(0);
    expect(c.compiledCreateMs).toBeGreaterThan(0);
    expect(c.helps).toBe(c.compiledCreateMs < c.plainCreateMs * 0.95);

    // Same digest, same device class: the stored profile is reused and the session opens tuned.
    await client.deploy(sampleModelPath('wide-mlp'), 'second', spec);
    const second = replicaOf(await client.status(), 'second');
    expect(second.profile).toMatchObject({ source: 'cache', threads: { intraOp: t.intraOp, mode: t.mode, source: 'profile' } });
    expect(second.profile!.tookMs).toBe(0);
    expect(Array.from((await client.infer('second', x)).y!.data as Float32Array)).toEqual(Array.from(y.y!.data as Float32Array));
    expect(await client.profiles('second')).toHaveLength(1);
    // ...and uses the compile cache only if the profile found that it helps.
    const loaded = (await client.events({ model: 'second' })).find((e) => e.type === 'loaded')!;
    expect((loaded.data as { compile: string }).compile).toBe(c.helps ? 'hit' : 'off');
    // Not profiled this time, so it ran once on synthetic inputs before serving; the first load's
    // profile runs were its warm-up.
    expect((loaded.data as { warmupMs?: number }).warmupMs).toBeGreaterThan(0);
    const firstLoaded = (await client.events({ model: 'first' })).find((e) => e.type === 'loaded')!;
    expect((firstLoaded.data as { warmupMs?: number }).warmupMs).toBeUndefined();
  }, 60_000);

  it("a deployment's thread settings win over the profile", async () => {
    const client = cluster.client();
    await client.deploy(sampleModelPath('wide-mlp'), 'pinned-threads', {
      device: 'cpu',
      profile: { budgetMs: 800 },
      threads: { intraOp: 1, interOp: 2, mode: 'parallel' },
    });
    const r = replicaOf(await client.status(), 'pinned-threads');
    expect(r.profile!.threads).toEqual({ intraOp: 1, interOp: 2, mode: 'parallel', source: 'deployment' });
    // warmup: false skips the warm-up run
    await client.deploy(sampleModelPath('wide-mlp'), 'cold', { device: 'cpu', profile: { budgetMs: 800 }, warmup: false });
    const cold = (await client.events({ model: 'cold' })).find((e) => e.type === 'loaded')!;
    expect((cold.data as { warmupMs?: number }).warmupMs).toBeUndefined();
    // compile: true overrides the profile's finding
    await client.deploy(sampleModelPath('wide-mlp'), 'always-compiled', { device: 'cpu', profile: { budgetMs: 800 }, compile: true });
    const loaded = (await client.events({ model: 'always-compiled' })).find((e) => e.type === 'loaded')!;
    expect((loaded.data as { compile: string }).compile).toBe('hit');
    expect((await client.infer('pinned-threads', x)).y!.dims).toEqual([1, 10]);
  }, 60_000);

  it('without a profile, a replica is charged what its session measurably took at load, not the estimate', async () => {
    const client = cluster.client();
    await client.deploy(sampleModelPath('wide-mlp'), 'unprofiled', { device: 'cpu', profile: { enabled: false } });
    const r = replicaOf(await client.status(), 'unprofiled');
    const loaded = (await client.events({ model: 'unprofiled' })).find((e) => e.type === 'loaded')!;
    expect(loaded.data).toMatchObject({ chargedBy: 'measured' });
    const { spec } = await client.describe('unprofiled');
    expect(r.bytes).toBeGreaterThanOrEqual(spec.sizeBytes);
    expect(r.bytes).not.toBe(estimateReplicaBytes(spec));
    expect(loaded.bytes).toBe(r.bytes);
    // With a profile, the profile's figure is charged.
    const first = (await client.events({ model: 'first' })).find((e) => e.type === 'loaded')!;
    expect(first.data).toMatchObject({ chargedBy: 'profile' });
    expect(first.bytes).toBe((await client.profiles('first'))[0]!.memory.replicaBytes);
  }, 30_000);

  it('rejects nonsense thread settings with BAD_REQUEST', async () => {
    const err = await cluster
      .client()
      .deploy(sampleModelPath('mlp'), 'bad-threads', { device: 'cpu', threads: { intraOp: 0 } as never })
      .catch((e: { code: string; message: string }) => e);
    expect(err).toMatchObject({ code: 'BAD_REQUEST' });
    expect((err as { message: string }).message).toMatch(/threads\.intraOp/);
  });
});

describe("a worker's --threads", () => {
  it('fixes the thread count and skips thread tuning', async () => {
    const cluster = await LocalCluster.start({ workers: 1, worker: { threads: 1 } });
    try {
      const client = cluster.client();
      await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { budgetMs: 300 } });
      const r = replicaOf(await client.status(), 'mlp');
      expect(r.profile).toMatchObject({ source: 'measured', threads: { intraOp: 1, mode: 'sequential', source: 'worker' } });
      expect(r.profile!.deviceClass).toMatch(/-t1$/);
      const [p] = await client.profiles('mlp');
      expect(p!.threads).toBeUndefined();
    } finally {
      await cluster.stop();
    }
  }, 30_000);
});
