// Integration: a real nats-server, a head and a worker with a real onnxruntime session. After
// traffic, the replica's heartbeat (as `status` reports it) carries the latency of its successful
// requests: count exactly those, p99 ≥ p50 ≥ the run's slowdown, refused requests not counted.
import { ErrorCode, type FlotillaError, type LoadedReplicaState } from '@flotilla/protocol';
import type { FlotillaClient, Tensor } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

/** Every batch waits this long before session.run: a floor under each request's latency. */
const SLOWDOWN_MS = 5;
const OK_REQUESTS = 40;

let cluster: LocalCluster;
let client: FlotillaClient;
const x = (n: number): Tensor => ({ dtype: 'float32', dims: [n, 16], data: randomFloats(n * 16, 7) });

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1, worker: { slowdownMs: SLOWDOWN_MS } });
  client = cluster.client();
  await client.deploy(sampleModelPath('mlp'), 'lat', { device: 'cpu', profile: { enabled: false } });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

async function replica(): Promise<LoadedReplicaState | undefined> {
  return (await client.status()).workers
    .flatMap((w) => w.replicas)
    .find((r): r is LoadedReplicaState => r.model === 'lat' && r.state === 'ready');
}

it('reports p50/p99 and count of the successful requests in the heartbeat after traffic', async () => {
  const before = await until(replica, { what: 'the replica ready' });
  expect(before.latencyMs).toBeUndefined(); // no request answered yet

  // Sequential and concurrent requests, and refused ones (wrong width): those must not count.
  for (let i = 0; i < OK_REQUESTS / 2; i++) await client.infer('lat', { x: x(1) });
  await Promise.all(Array.from({ length: OK_REQUESTS / 2 }, () => client.infer('lat', { x: x(2) })));
  for (let i = 0; i < 5; i++) {
    const err = await client.infer('lat', { x: { dtype: 'float32', dims: [1, 3], data: new Float32Array(3) } }).then(
      () => undefined,
      (e: FlotillaError) => e,
    );
    expect(err?.code).toBe(ErrorCode.INPUT_MISMATCH);
  }

  const r = await until(
    async () => {
      const s = await replica();
      return s && s.processed === OK_REQUESTS && s.failed === 5 ? s : undefined;
    },
    { what: 'a heartbeat with every request counted' },
  );
  console.log(`replica-latency: ${JSON.stringify(r.latencyMs)} (slowdown ${SLOWDOWN_MS} ms per batch)`);
  expect(r.latencyMs).toBeDefined();
  const { p50, p99, count } = r.latencyMs!;
  expect(count).toBe(OK_REQUESTS);
  expect(p50).toBeGreaterThan(0);
  expect(p50).toBeGreaterThanOrEqual(SLOWDOWN_MS);
  expect(p99).toBeGreaterThanOrEqual(p50);
  expect(p99).toBeLessThan(30_000);
}, 60_000);
