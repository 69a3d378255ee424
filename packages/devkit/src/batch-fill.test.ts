// Integration: a real nats-server, a head, a worker process and a real onnxruntime session. A
// session run holds the worker's event-loop thread, so requests that arrive meanwhile sit unread
// in its socket; when the run ends they must form one batch, not a batch of whichever was parsed
// first and then another of the rest (what a replica that decided on each request as it was
// parsed did: with no queue delay, the first request read after a run went out alone).
import type { FlotillaClient, Tensor } from '@flotilla/client';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { ProcessCluster } from './process-cluster.js';

// wide-mlp: a 128-item batch holds the thread for ≈ 25 ms, and 4 KB requests are cheap to send, so
// all the late ones are in the worker's socket before the run ends (49 KB images were not always).
const rows = (n: number): Tensor => ({ dtype: 'float32', dims: [n, 1024], data: randomFloats(n * 1024, n) });
const LONG = 128;
const LATE = 24;
/** The 'patient' deployment's queue delay, ms. */
const DELAY = 100;

let cluster: ProcessCluster;
let client: FlotillaClient;

beforeAll(async () => {
  cluster = await ProcessCluster.start({ cluster: 'fill' });
  client = cluster.client;
  await client.deploy(sampleModelPath('wide-mlp'), 'wide', {
    device: 'cpu',
    profile: { enabled: false },
    batching: { maxBatchSize: LONG, maxQueueDelayMs: 0 },
  });
  await client.deploy(sampleModelPath('wide-mlp'), 'patient', {
    device: 'cpu',
    profile: { enabled: false },
    batching: { maxBatchSize: 8, maxQueueDelayMs: DELAY },
  });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

it('batches the requests that arrived during a run together once it ends', async () => {
  await client.infer('wide', { x: rows(1) }); // warm: the session's first run allocates
  // A full batch holds the worker's thread; the single requests sent right after arrive while it runs.
  const long = client.inferWithMeta('wide', { x: rows(LONG) });
  await new Promise((r) => setTimeout(r, 2));
  const late = await Promise.all(Array.from({ length: LATE }, () => client.inferWithMeta('wide', { x: rows(1) })));
  const first = await long;
  const batches = late.map((r) => r.meta.batch);
  console.log(
    `batch-fill: the ${LONG}-item run took ${first.meta.runMs} ms; the ${LATE} late requests ran in batches of ${batches.join(',')}`,
  );
  expect(first.meta.batch).toBe(LONG);
  // Every late request shared its batch; at most two batches (a request may still be on the wire
  // when the run ends), the first of them with most of the late requests.
  expect(Math.min(...batches)).toBeGreaterThan(1);
  expect(new Set(batches).size).toBeLessThanOrEqual(2);
  expect(Math.max(...batches)).toBeGreaterThanOrEqual(LATE / 2);
}, 60_000);

it('waits out the queue delay only while company comes: one caller at a time soon runs at once', async () => {
  const queued: number[] = [];
  for (let i = 0; i < 40; i++) queued.push((await client.inferWithMeta('patient', { x: rows(1) })).meta.queueMs!);
  console.log(`batch-fill: one caller, queue ms per request: ${queued.map((q) => Math.round(q)).join(',')}`);
  // Before any evidence the replica waits as configured; ≈ 22 lonely arrivals later it stops waiting.
  expect(queued[0]).toBeGreaterThanOrEqual(DELAY * 0.9);
  for (const q of queued.slice(-10)) expect(q).toBeLessThan(DELAY / 2);
  // A burst of callers still shares batches.
  const burst = await Promise.all(Array.from({ length: 8 }, () => client.inferWithMeta('patient', { x: rows(1) })));
  expect(Math.max(...burst.map((r) => r.meta.batch))).toBeGreaterThan(1);
}, 60_000);
