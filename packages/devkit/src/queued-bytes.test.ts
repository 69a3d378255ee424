// Integration: a worker bounds the bytes of requests it holds (worker/src/intake-budget.ts). A
// worker process started by the CLI with `--max-queued-bytes 4MiB`, conv-classifier deployed at
// batch 1, then one burst of 995 KB requests published at once on its subject: without the bound
// every one of them is queued (a burst of 1,200 held 984 MiB in one replica), with it those that
// would take the worker past 4 MiB are answered OVERLOADED at once, with the limit in the error's
// data. Every request gets an answer (nothing accepted is dropped), the worker's metrics say what
// it held and its limit, and it holds nothing once all are answered. With a second model on the
// worker, the burst's model holds at most half the limit, and the other model's request still fits.
import { connect } from '@nats-io/transport-node';
import { closeBus, type NatsConnection } from '@flotilla/bus';
import { PROTOCOL_VERSION, decode, encode, fromTypedArray, subjects as makeSubjects } from '@flotilla/protocol';
import { freePort } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { ProcessCluster } from './process-cluster.js';
import { until } from './until.js';

const MiB = 1024 * 1024;
const LIMIT = 4 * MiB;
const HW = 288; // 3 × 288 × 288 float32 = 995,328 bytes: about 1 MiB, under max_payload
const BURST = 48;

let c: ProcessCluster;
let nc: NatsConnection;
let metricsUrl: string;
const cluster = `qbytes${Math.random().toString(36).slice(2, 8)}`;

beforeAll(async () => {
  const port = await freePort();
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
  c = await ProcessCluster.start({
    cluster,
    workerArgs: ['--threads', '1', '--max-queued-bytes', '4MiB'],
    workerEnv: { FLOTILLA_HEALTH_PORT: String(port) },
  });
  await c.client.deploy(sampleModelPath('conv-classifier'), 'cc', { device: 'cpu', batching: { maxBatchSize: 1, maxQueueDelayMs: 0 } });
  nc = await connect({ servers: c.nats.url });
}, 120_000);

afterAll(async () => {
  if (nc) await closeBus(nc);
  await c?.stop();
});

const gauge = async (name: string): Promise<number | undefined> => {
  const text = await (await fetch(metricsUrl)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
};

interface Answer {
  ok: boolean;
  code?: string;
  data?: Record<string, number>;
}

/** A 995 KB inference request for conv-classifier, as a raw NATS caller sends it. */
const burstBody = (seed: number) =>
  encode({
    v: PROTOCOL_VERSION,
    inputs: { x: fromTypedArray('float32', [1, 3, HW, HW], randomFloats(3 * HW * HW, seed)) },
    timeoutMs: 120_000,
  });

/** Publishes `count` copies of `body` to `subject`, each with its own reply subject; the answers, as they come. */
async function burst(subject: string, body: Uint8Array, count: number): Promise<Answer[]> {
  const answers: Answer[] = [];
  const inbox = `_INBOX.qbytes.${Date.now()}.${Math.random().toString(36).slice(2, 8)}`;
  nc.subscribe(`${inbox}.*`, {
    callback: (_err, m) => {
      const r = decode(m.data) as { ok: boolean; error?: { code: string; data?: Record<string, number> } };
      answers.push(r.ok ? { ok: true } : { ok: false, code: r.error!.code, data: r.error!.data });
    },
  });
  await nc.flush();
  for (let i = 0; i < count; i++) nc.publish(subject, body, { reply: `${inbox}.${i}` });
  return answers;
}

describe('a burst of large requests', () => {
  it('is held up to the worker’s byte limit; the rest is answered OVERLOADED at once, and every request is answered', async () => {
    const body = burstBody(7);
    expect(body.byteLength).toBeGreaterThan(LIMIT / 5);
    const answers = await burst(makeSubjects(cluster).infer('cc'), body, BURST);
    await nc.flush();
    await until(() => answers.length >= BURST, { timeoutMs: 90_000, what: 'every request answered' });
    expect(answers).toHaveLength(BURST);
    const refused = answers.filter((a) => a.code === 'OVERLOADED');
    const served = answers.filter((a) => a.ok);
    expect(served.length + refused.length).toBe(BURST);
    // At most five such requests fit in 4 MiB (a sixth when nothing else is held): the rest were refused.
    expect(served.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeGreaterThanOrEqual(BURST / 2);
    for (const r of refused) {
      expect(r.data).toMatchObject({ limitBytes: LIMIT, sizeBytes: body.byteLength });
      expect(r.data!.heldBytes! + body.byteLength).toBeGreaterThan(LIMIT);
      expect(r.data!.heldBytes).toBeLessThanOrEqual(LIMIT);
    }
    expect(await gauge('flotilla_queued_request_bytes_limit')).toBe(LIMIT);
    await until(async () => (await gauge('flotilla_queued_request_bytes')) === 0, { timeoutMs: 10_000, what: 'nothing held' });
    // The worker still serves.
    const out = await c.client.infer('cc', { x: { dtype: 'float32', dims: [1, 3, 64, 64], data: randomFloats(3 * 64 * 64, 3) } });
    expect(out.logits!.dims).toEqual([1, 10]);
  }, 120_000);

  it('counts a staged or direct body by its announced size, before fetching it; the SDK’s retries take the refused ones', async () => {
    const big = (seed: number) => ({ x: { dtype: 'float32' as const, dims: [1, 3, 600, 600], data: randomFloats(3 * 600 * 600, seed) } });
    // 4.3 MB each, over max_payload: sent as references. The first is held (nothing else is), the others would pass 4 MiB.
    const once = await Promise.allSettled([1, 2, 3].map((seed) => c.client.infer('cc', big(seed), { retries: 0, timeoutMs: 60_000 })));
    const refused = once
      .filter((r) => r.status === 'rejected')
      .map((r) => (r as PromiseRejectedResult).reason as { code: string; data?: Record<string, number> });
    expect(once.some((r) => r.status === 'fulfilled')).toBe(true);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const e of refused) {
      expect(e.code).toBe('OVERLOADED');
      expect(e.data).toMatchObject({ limitBytes: LIMIT });
      expect(e.data!.sizeBytes).toBeGreaterThan(3 * 600 * 600 * 4);
    }
    // With the default retries every one is answered: a refused request comes back after a back-off.
    const retried = await Promise.all([4, 5, 6].map((seed) => c.client.infer('cc', big(seed), { timeoutMs: 60_000 })));
    for (const out of retried) expect(out.logits!.dims).toEqual([1, 10]);
    await until(async () => (await gauge('flotilla_queued_request_bytes')) === 0, { timeoutMs: 10_000, what: 'nothing held' });
  }, 120_000);

  it('with a second model on the worker, a burst to one holds at most half: the other’s request behind the burst still fits', async () => {
    await c.client.deploy(sampleModelPath('conv-classifier'), 'cc2', { device: 'cpu', batching: { maxBatchSize: 1, maxQueueDelayMs: 0 } });
    const body = burstBody(9);
    const s = makeSubjects(cluster);
    const answers = await burst(s.infer('cc'), body, BURST);
    // Sent after the burst on the same connection: the worker reads it after all of the burst's requests.
    const other = decode((await nc.request(s.infer('cc2'), body, { timeout: 60_000 })).data) as { ok: boolean; error?: { code: string } };
    expect(other.error?.code).toBeUndefined();
    expect(other.ok).toBe(true);
    await until(() => answers.length >= BURST, { timeoutMs: 90_000, what: 'every request answered' });
    const refused = answers.filter((a) => a.code === 'OVERLOADED');
    expect(refused.length).toBeGreaterThanOrEqual(BURST / 2);
    for (const r of refused) {
      // cc alone never held more than its share, 2 MiB: every refusal was for the share, not the limit.
      expect(r.data).toMatchObject({ limitBytes: LIMIT, shareBytes: LIMIT / 2, sizeBytes: body.byteLength });
      expect(r.data!.replicaBytes!).toBeLessThanOrEqual(LIMIT / 2);
      expect(r.data!.replicaBytes! + body.byteLength).toBeGreaterThan(LIMIT / 2);
    }
    await until(async () => (await gauge('flotilla_queued_request_bytes')) === 0, { timeoutMs: 10_000, what: 'nothing held' });
  }, 120_000);
});
