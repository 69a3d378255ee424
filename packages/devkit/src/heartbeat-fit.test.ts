// Integration: a worker whose heartbeat outgrows the server's max_payload stays heard. A model with
// dynamic H and W reports every input shape its callers send (per-shape profile entries and tuned
// batch sizes, up to 64 of each), so callers alone can grow its replica's part of the heartbeat
// past a small max_payload; nats.js refuses to publish a message over it, and a head that hears
// nothing for its worker timeout takes the worker for gone. The worker leaves details out until the
// heartbeat fits (worker/heartbeat-fit.ts) and says so in its log.
import { setTimeout as sleep } from 'node:timers/promises';
import type { FlotillaClient, Tensor } from '@flotilla/client';
import type { LoadedReplicaState } from '@flotilla/protocol';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { ProcessCluster } from './process-cluster.js';
import type { WorkerProcess } from './worker-process.js';

const MAX_PAYLOAD = 12 * 1024;
const WORKER_TIMEOUT_MS = 2000;
const SHAPES = 64;

let cluster: ProcessCluster;
let worker: WorkerProcess;
let client: FlotillaClient;

beforeAll(async () => {
  cluster = await ProcessCluster.start({ cluster: 'hbfit', nats: { maxPayload: MAX_PAYLOAD }, workerTimeoutMs: WORKER_TIMEOUT_MS });
  ({ worker, client } = cluster);
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

it('callers sending 64 shapes to a dynamic-shape model do not blind the head to its worker', async () => {
  // No background profiles (maxShapes 0): every shape is tracked as `skipped`, the cheapest way to 64 entries.
  await client.deploy(sampleModelPath('dynamic-hw-convnet'), 'dyn', { device: 'cpu', profile: { maxShapes: 0 } });
  for (let w = 8; w < 8 + SHAPES; w++) {
    const x: Tensor = { dtype: 'float32', dims: [1, 3, 8, w], data: randomFloats(3 * 8 * w, w) };
    await client.infer('dyn', { x });
  }
  // Longer than the head's worker timeout, with heartbeats every 250 ms.
  await sleep(2 * WORKER_TIMEOUT_MS);
  const status = await client.status();
  const w = status.workers.find((x) => x.id === 'w')!;
  expect(w.alive).toBe(true);
  const r = w.replicas.find((x) => x.model === 'dyn') as LoadedReplicaState;
  expect(r.state).toBe('ready');
  // What placement reads is there; the bulk (per-shape entries, tuned sizes) was left out.
  expect(r.profile).toMatchObject({ source: 'per-shape' });
  expect(r.tunedBatches).toBeUndefined();
  const logged = worker
    .log()
    .split('\n')
    .filter((l) => l.includes('to fit one message'))
    .map((l) => JSON.parse(l) as { bytes: number; maxPayload: number; leftOut: string[] });
  console.log(`heartbeat-fit: ${JSON.stringify(logged)}`);
  expect(logged.length).toBeGreaterThan(0);
  expect(logged[0]!.maxPayload).toBe(MAX_PAYLOAD);
  expect(logged[0]!.leftOut[0]).toBe('tunedBatches');
  // Still serving.
  await expect(client.infer('dyn', { x: { dtype: 'float32', dims: [1, 3, 8, 8], data: randomFloats(192, 1) } })).resolves.toBeDefined();
}, 60_000);
