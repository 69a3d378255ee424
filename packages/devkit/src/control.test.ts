// Integration: control-plane behaviour with real processes' pieces — GPU placement on an
// overridden inventory (CPU fallback reported), head restart recovering deployments from KV,
// health endpoints, and dead-worker replacement.
import { Head, headMetrics } from '@flotilla/head';
import { silentLogger, startHealthServer } from '@flotilla/bus';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

const GiB = 1024 ** 3;
const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16) };

describe('GPU placement on an overridden inventory', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({
      workers: 2,
      worker: (i) =>
        i === 0
          ? { inventory: { gpus: [{ index: 0, vendor: 'NVIDIA', model: 'Fake L4', vramTotalBytes: 24 * GiB, vramFreeBytes: 23 * GiB }] } }
          : {},
    });
  });
  afterAll(() => cluster.stop());

  it('places a gpu deployment on the GPU device, falls back to the CPU provider and says so', async () => {
    const client = cluster.client();
    const st = await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'gpu' });
    expect(st.replicas).toEqual([expect.objectContaining({ workerId: 'w0', device: 'gpu:0', state: 'ready' })]);
    const status = await client.status();
    const w0 = status.workers.find((w) => w.id === 'w0')!;
    expect(w0.inventory).toMatchObject({ source: 'override', gpus: [{ model: 'Fake L4' }] });
    const gpu = w0.devices.find((d) => d.id === 'gpu:0')!;
    expect(gpu).toMatchObject({ kind: 'gpu', capacityBytes: 24 * GiB });
    expect(gpu.usedBytes).toBeGreaterThan(0);
    expect(gpu.models.map((m) => m.name)).toEqual(['mlp']);
    // The bundled onnxruntime has no CUDA provider: the replica runs on the CPU provider.
    expect(w0.replicas[0]).toMatchObject({ device: 'gpu:0', executionProvider: 'cpu' });
    // The loaded event says which provider failed and why (here: no CUDA libraries installed).
    const loaded = (await client.events({ model: 'mlp' })).find((e) => e.type === 'loaded')!;
    expect(loaded.data).toMatchObject({ executionProvider: 'cpu', fallbackFrom: 'cuda', fallbackReason: expect.stringMatching(/cuda/) });
    const r = await client.inferWithMeta('mlp', { x });
    expect(r.meta.device).toBe('gpu:0');
  });

  it('a gpu-only deployment without fallback is not placed on a CPU-only cluster part', async () => {
    const client = cluster.client();
    const st = await client.deploy(sampleModelPath('mlp'), 'big-gpu', {
      device: 'gpu',
      allowFallback: false,
      memoryBytes: 30 * GiB,
      wait: false,
    });
    const d = await until(async () => {
      const s = await client.describe('big-gpu');
      return s.pendingReason ? s : undefined;
    });
    expect(st.ready).toBe(0);
    expect(d.pendingReason).toMatchObject({ code: 'NO_CAPACITY' });
    expect(d.pendingReason!.message).toMatch(/no gpu device has/);
  });
});

describe('head restart and worker loss', () => {
  it('a new head recovers deployments from KV; a dead worker’s replica is placed elsewhere', async () => {
    const cluster = await LocalCluster.start({ workers: 2, head: { workerTimeoutMs: 1000 } });
    try {
      const client = cluster.client();
      await client.deploy(sampleModelPath('mlp'), 'mlp', { replicas: 1, device: 'cpu' });
      await cluster.head.stop();
      // Inference keeps working with no head at all: the data plane does not touch it.
      expect((await client.infer('mlp', { x })).y!.dims).toEqual([1, 4]);

      const head2 = await Head.start({
        cluster: cluster.cluster,
        bus: { servers: cluster.url },
        logger: silentLogger(),
        workerTimeoutMs: 1000,
      });
      try {
        const ls = await client.list();
        expect(ls.map((d) => d.spec.name)).toEqual(['mlp']);
        const before = await until(async () => {
          const d = await client.describe('mlp');
          return d.ready === 1 ? d : undefined;
        });
        // Kill the worker holding the replica without a goodbye (close its connection abruptly).
        const victim = cluster.workers.find((w) => w.id === before.replicas[0]!.workerId)!;
        await victim.nc.close();
        const after = await until(async () => {
          const d = await client.describe('mlp');
          return d.ready === 1 && d.replicas[0]!.workerId !== victim.id ? d : undefined;
        });
        expect(after.replicas[0]!.workerId).not.toBe(victim.id);
        expect((await client.infer('mlp', { x })).y!.dims).toEqual([1, 4]);
        // Dead (or already forgotten, when head2 heard it only once before it died).
        expect(head2.registry.get(victim.id)?.alive ?? false).toBe(false);
        expect(head2.registry.running().map((w) => w.hb.workerId)).not.toContain(victim.id);
      } finally {
        await head2.stop();
      }
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});

describe('health endpoints', () => {
  it('/livez is 200; /readyz is 200 while serving and 503 once draining', async () => {
    const cluster = await LocalCluster.start({ workers: 1 });
    const w = cluster.workers[0]!;
    const health = await startHealthServer({ port: 0, host: '127.0.0.1', notReady: () => w.notReady(), metrics: () => w.metrics.text() });
    const get = (p: string) => fetch(`http://127.0.0.1:${health.port}${p}`);
    try {
      expect((await get('/livez')).status).toBe(200);
      expect((await get('/readyz')).status).toBe(200);
      expect((await get('/nope')).status).toBe(404);
      const client = cluster.client();
      await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } });
      await client.infer('mlp', { x });
      await client.infer('nope-model', { x }).catch(() => undefined);
      await client.infer('mlp', { x: { dtype: 'float32', dims: [1, 3], data: new Float32Array(3) } }).catch(() => undefined);
      const metrics = await (await get('/metrics')).text();
      expect(metrics).toMatch(/flotilla_requests_total\{model="mlp",code="OK",worker="w0"\} 1/);
      expect(metrics).toMatch(/flotilla_requests_total\{model="mlp",code="INPUT_MISMATCH",worker="w0"\} 1/);
      expect(metrics).toMatch(/flotilla_batch_size_count\{[^}]*model="mlp"[^}]*\} 1/);
      expect(metrics).toMatch(/flotilla_device_memory_budget_bytes\{[^}]*device="cpu"[^}]*\} \d+/);
      expect(metrics).toMatch(/flotilla_worker_events_total\{[^}]*type="loaded"[^}]*\} 1/);
      // Request buffers gathered in the worker's payload pool (these small requests never span a read: counted, maybe 0).
      expect(metrics).toMatch(/flotilla_payload_buffers_total\{outcome="reused",worker="w0"\} \d+/);
      expect(metrics).toMatch(/flotilla_payload_pool_free_bytes\{worker="w0"\} \d+/);
      await until(async () => (cluster.head.lastTickMs > 0 ? true : undefined));
      const headText = await headMetrics(
        () => cluster.head.status(),
        () => cluster.head.lastTickMs,
      ).text();
      expect(headText).toMatch(/flotilla_replicas\{model="mlp",kind="ready"\} 1/);
      expect(headText).toMatch(/flotilla_workers\{alive="true"\} 1/);
      const tick = Number(/^flotilla_head_tick_seconds (\S+)$/m.exec(headText)?.[1]);
      expect(tick).toBeGreaterThan(0);
      expect(tick).toBeLessThan(1);
      cluster.nats.kill();
      await until(async () => ((await get('/readyz')).status === 503 ? true : undefined));
      expect(await (await get('/readyz')).json()).toEqual({ ready: false, reason: 'not connected to NATS' });
      await w.stop();
      expect(await (await get('/readyz')).json()).toMatchObject({ ready: false, reason: 'worker is stopped' });
      expect((await get('/livez')).status).toBe(200);
    } finally {
      await health.close();
      await cluster.stop();
    }
  }, 60_000);
});

describe('security', () => {
  it('an auth-enabled NATS refuses a client without the token and serves one with it; names cannot escape', async () => {
    const cluster = await LocalCluster.start({ workers: 1, nats: { token: 's3cret' } });
    try {
      const good = cluster.client();
      await good.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } });
      expect((await good.infer('mlp', { x })).y!.dims).toEqual([1, 4]);
      const anonymous = cluster.client({ token: undefined, reconnectForever: false });
      // Refused credentials are FORBIDDEN (not the retryable UNAVAILABLE of an unreachable server).
      await expect(anonymous.infer('mlp', { x })).rejects.toMatchObject({ code: 'FORBIDDEN' });
      const wrong = cluster.client({ token: 'nope', reconnectForever: false });
      await expect(wrong.list()).rejects.toMatchObject({ code: 'FORBIDDEN' });
      // Model names are one NATS token and a safe file name: path tricks are refused up front.
      for (const name of ['../etc/passwd', 'a/b', 'a.b', '..']) {
        await expect(good.deploy(sampleModelPath('mlp'), name)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
        await expect(good.infer(name, { x })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
      }
      // Threads beyond the worker's cores: the load is refused, and deploy says so at once (not after its 120 s wait).
      const t0 = Date.now();
      await expect(good.deploy(sampleModelPath('mlp'), 'greedy', { device: 'cpu', threads: { intraOp: 1024 } })).rejects.toMatchObject({
        code: 'BAD_REQUEST',
        message: expect.stringContaining('usable cores'),
      });
      expect(Date.now() - t0).toBeLessThan(15_000);
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});
