// One retry layer, pinned end to end on a real nats-server: a stand-in replica (a plain NATS
// subscriber on the model's queue group, no head) answers OVERLOADED as scripted, and counts what
// reaches it. A budget of `retries` means exactly `retries + 1` attempts at the replica, whether
// the caller is inferWire, the load generator or a batch job (nothing retries on top of it).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NO_RESPONDERS_GRACE_MS, closeBus, connectBus, type NatsConnection } from '@flotilla/bus';
import { FlotillaClient } from '@flotilla/client';
import { submitJob } from '@flotilla/jobs';
import { NatsServer } from '@flotilla/local';
import { runLoad } from '@flotilla/loadgen';
import { PROTOCOL_VERSION, REPLICA_QUEUE, decode, encode, fromTypedArray, subjects, type WireTensors } from '@flotilla/protocol';

const x: WireTensors = { x: fromTypedArray('float32', [1, 2], new Float32Array([1, 2])) };
const ok = (outputs: WireTensors) =>
  encode({
    v: PROTOCOL_VERSION,
    ok: true,
    outputs,
    meta: { worker: 'w', replica: 'r', device: 'cpu', batch: 1, queueMs: 0, runMs: 0, queueDepth: 0 },
  });
const overloaded = () => encode({ v: PROTOCOL_VERSION, ok: false, error: { code: 'OVERLOADED', message: 'queue full' } });

/** x[0] of a request (the line or request key); copied out of the decoder's buffer first. */
const firstValue = (inputs: WireTensors): number => new Float32Array(Uint8Array.from(inputs.x!.data).buffer)[0]!;

let nats: NatsServer;
let replicaConn: NatsConnection;
let client: FlotillaClient;
const dir = mkdtempSync(join(tmpdir(), 'flotilla-retry-layers-'));
let n = 0;

/**
 * A stand-in replica of a fresh model: `answer(k)` for the k-th request of one input (counted by
 * its first value), 'silent' leaving it unanswered. Returns the model name and the counts.
 */
function replica(answer: (k: number) => 'ok' | 'overloaded' | 'silent'): {
  model: string;
  requests: Map<number, number>;
  total: () => number;
} {
  const model = `m${++n}`;
  const requests = new Map<number, number>();
  replicaConn.subscribe(subjects('retrylayers').infer(model), {
    queue: REPLICA_QUEUE,
    callback: (_err, msg) => {
      const req = decode<{ inputs: WireTensors }>(msg.data);
      const key = firstValue(req.inputs);
      const k = (requests.get(key) ?? 0) + 1;
      requests.set(key, k);
      const what = answer(k);
      if (what !== 'silent') msg.respond(what === 'ok' ? ok(req.inputs) : overloaded());
    },
  });
  return { model, requests, total: () => [...requests.values()].reduce((a, b) => a + b, 0) };
}

beforeAll(async () => {
  nats = await NatsServer.start();
  replicaConn = await connectBus({ servers: nats.url, name: 'stand-in replica' });
  client = new FlotillaClient({ servers: nats.url, cluster: 'retrylayers' });
  await client.connection();
});

afterAll(async () => {
  // The client's background routing refreshes (describe, no head here) give up after this long.
  await sleep(NO_RESPONDERS_GRACE_MS);
  await client?.close();
  if (replicaConn) await closeBus(replicaConn);
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('one retry layer (real nats-server, stand-in replica)', () => {
  it("inferWire: retries 2 is 3 attempts, then the replica's own code", async () => {
    const r = replica(() => 'overloaded');
    await replicaConn.flush();
    const retried: number[] = [];
    await expect(
      client.inferWire(r.model, x, { timeoutMs: 10_000, retries: 2, onRetry: (e) => retried.push(e.attempt) }),
    ).rejects.toMatchObject({ code: 'OVERLOADED' });
    expect(r.total()).toBe(3);
    expect(retried).toEqual([1, 2]);
  });

  it('inferWire: without a budget, retried within the deadline until it answers', async () => {
    const r = replica((k) => (k <= 4 ? 'overloaded' : 'ok'));
    await replicaConn.flush();
    const res = await client.inferWire(r.model, x, { timeoutMs: 10_000 });
    expect(res.attempts).toBe(5);
    expect(r.total()).toBe(5);
  });

  it('inferWire: an attempt that times out is a retry too (at once), within the budget', async () => {
    const r = replica((k) => (k === 1 ? 'silent' : 'ok'));
    await replicaConn.flush();
    const res = await client.inferWire(r.model, x, { timeoutMs: 10_000, attemptTimeoutMs: 200, retries: 1 });
    expect(res.attempts).toBe(2);
    const none = replica(() => 'silent');
    await replicaConn.flush();
    await expect(client.inferWire(none.model, x, { timeoutMs: 10_000, attemptTimeoutMs: 200, retries: 1 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(none.total()).toBe(2);
  });

  it.each([0, 1, 3])('runLoad --retries %i: every request reaches the replica exactly retries + 1 times', async (retries) => {
    const r = replica(() => 'overloaded');
    await replicaConn.flush();
    const s = await runLoad(client, r.model, x, { concurrency: 1, durationMs: 150, retries, timeoutMs: 10_000 });
    expect(s.sent).toBeGreaterThan(0);
    expect(s.errored).toEqual({ OVERLOADED: s.sent });
    expect(r.total()).toBe((retries + 1) * s.sent);
    expect(s.retried).toBe(retries * s.sent);
  });

  it('runLoad: a request that succeeds on its last allowed attempt is ok', async () => {
    const r = replica((k) => (k <= 2 ? 'overloaded' : 'ok'));
    await replicaConn.flush();
    const s = await runLoad(client, r.model, x, { concurrency: 1, durationMs: 50, retries: 2, timeoutMs: 10_000 });
    // Every request carries the same input: the first one takes 3 attempts, the rest 1.
    expect(s).toMatchObject({ ok: s.sent, errored: {}, retried: 2 });
    expect(r.total()).toBe(s.sent + 2);
  });

  it('a batch job with retries 1 sends each line at most twice', async () => {
    // Line i has x[0] = i: lines 0..5 are answered on their second attempt, lines 6..9 never.
    const r = replica(() => 'overloaded');
    const good = new Set([0, 1, 2, 3, 4, 5]);
    replicaConn.subscribe(subjects('retrylayers').infer(`${r.model}j`), {
      queue: REPLICA_QUEUE,
      callback: (_err, msg) => {
        const req = decode<{ inputs: WireTensors }>(msg.data);
        const key = firstValue(req.inputs);
        const k = (r.requests.get(key) ?? 0) + 1;
        r.requests.set(key, k);
        msg.respond(k >= 2 && good.has(key) ? ok(req.inputs) : overloaded());
      },
    });
    await replicaConn.flush();
    const input = join(dir, 'in.jsonl');
    const output = join(dir, 'out.jsonl');
    writeFileSync(
      input,
      Array.from({ length: 10 }, (_, i) => JSON.stringify({ x: { dtype: 'float32', dims: [1, 2], data: [i, 0] } })).join('\n') + '\n',
    );
    const s = await submitJob(client, {
      model: `${r.model}j`,
      input,
      output,
      stateDir: join(dir, 'state'),
      concurrency: 3,
      retries: 1,
      timeoutMs: 10_000,
    });
    expect(s).toMatchObject({ total: 10, ok: 6, failed: 4, errored: { OVERLOADED: 4 }, sent: 10, complete: true });
    expect([...r.requests.entries()].sort((a, b) => a[0] - b[0])).toEqual(Array.from({ length: 10 }, (_, i) => [i, 2]));
    const lines = readFileSync(output, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; error?: { code: string } });
    expect(lines.map((l) => l.error?.code ?? 'ok')).toEqual([...Array(6).fill('ok'), ...Array(4).fill('OVERLOADED')]);
  });
});
