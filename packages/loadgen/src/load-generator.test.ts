// runLoad: its loop and how it hands its retry budget to the client, against a scripted fake
// client; then against a real cluster (nats-server, head, a worker with onnxruntime). How many
// attempts a budget allows end to end: retry-layers.test.ts.
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { ErrorCode, FlotillaError, fromTypedArray, type WireTensors } from '@flotilla/protocol';
import type { FlotillaClient, InferOptions } from '@flotilla/client';
import { runLoad, itemsPerRequest } from './load-generator.js';
import { LoadStats, type LoadSummary } from './load-stats.js';

const x = (n: number): WireTensors => ({ x: fromTypedArray('float32', [n, 16], randomFloats(n * 16, 7)) });

/** A client whose inferWire takes `delayMs` and then does what `outcome(call index, its options)` says. */
function fakeClient(outcome: (i: number, opts: InferOptions) => Error | undefined, delayMs = 2) {
  let calls = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const options: InferOptions[] = [];
  const client = {
    connection: async () => ({}),
    inferWire: async (_model: string, _inputs: WireTensors, opts: InferOptions) => {
      const i = calls++;
      options.push(opts);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await sleep(delayMs);
        const err = outcome(i, opts);
        if (err) throw err;
        return { outputs: {}, meta: {} };
      } finally {
        inFlight--;
      }
    },
  };
  return {
    client: client as unknown as FlotillaClient,
    options,
    get calls() {
      return calls;
    },
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
  };
}

describe('runLoad loop and retries (fake client)', () => {
  it('keeps exactly `concurrency` requests in flight and abandons none', async () => {
    const f = fakeClient(() => undefined, 5);
    const s = await runLoad(f.client, 'm', x(3), { concurrency: 6, durationMs: 150 });
    expect(f.maxInFlight).toBe(6);
    expect(f.inFlight).toBe(0);
    expect(s.sent).toBe(f.calls);
    expect(s.ok).toBe(s.sent);
    expect(s.lost).toBe(0);
    expect(s.items).toBe(3 * s.ok);
    expect(s.sent).toBeGreaterThanOrEqual(6);
    expect(s.elapsedMs).toBeGreaterThanOrEqual(150);
    expect(s.latencyMs.p50).toBeGreaterThan(0);
  });

  it('never retries itself: the budget goes to the client, and a retryable error is counted once', async () => {
    const f = fakeClient(() => new FlotillaError(ErrorCode.OVERLOADED, 'full'), 1);
    const s = await runLoad(f.client, 'm', x(1), { concurrency: 2, durationMs: 100, retries: 3, timeoutMs: 700 });
    expect(s.ok).toBe(0);
    expect(s.errored).toEqual({ OVERLOADED: s.sent });
    expect(f.calls).toBe(s.sent);
    expect(s.retried).toBe(0);
    expect(f.options.every((o) => o.retries === 3 && o.timeoutMs === 700)).toBe(true);
    expect(s.lost).toBe(0);
  });

  it('defaults to 2 retries and counts the retries the client reports', async () => {
    // The client retries twice (reporting each), then succeeds.
    const f = fakeClient((_i, opts) => {
      opts.onRetry?.({ attempt: 1, error: new FlotillaError(ErrorCode.UNAVAILABLE, 'gone'), delayMs: 0 });
      opts.onRetry?.({ attempt: 2, error: new FlotillaError(ErrorCode.UNAVAILABLE, 'gone'), delayMs: 0 });
      return undefined;
    }, 1);
    const s = await runLoad(f.client, 'm', x(1), { concurrency: 1, durationMs: 100 });
    expect(s.errored).toEqual({});
    expect(s.ok).toBe(s.sent);
    expect(s.retried).toBe(2 * s.sent);
    expect(f.options.every((o) => o.retries === 2 && o.timeoutMs === undefined)).toBe(true);
  });

  it.each<[string, Error, string]>([
    ['non-retryable coded error, no retry', new FlotillaError(ErrorCode.INPUT_MISMATCH, 'bad'), 'INPUT_MISMATCH'],
    ['uncoded error is INTERNAL', new Error('boom'), 'INTERNAL'],
    ['unknown code kept', new FlotillaError('SOMETHING_NEW', 'x'), 'SOMETHING_NEW'],
  ])('%s', async (_name, err, code) => {
    const f = fakeClient(() => err, 1);
    const s = await runLoad(f.client, 'm', x(1), { concurrency: 2, durationMs: 50, retries: 5 });
    expect(s.errored).toEqual({ [code]: s.sent });
    expect(s.retried).toBe(0);
    expect(f.calls).toBe(s.sent);
  });

  it('errors that need no I/O do not starve the event loop (progress still reported)', async () => {
    let calls = 0;
    const client = {
      connection: async () => ({}),
      inferWire: async () => {
        calls++;
        throw new FlotillaError(ErrorCode.BAD_REQUEST, 'instant');
      },
    } as unknown as FlotillaClient;
    const progress: LoadSummary[] = [];
    const s = await runLoad(client, 'm', x(1), {
      concurrency: 4,
      durationMs: 120,
      onProgress: (p) => progress.push(p),
      progressIntervalMs: 20,
    });
    expect(progress.length).toBeGreaterThan(1);
    expect(s.errored).toEqual({ BAD_REQUEST: calls });
  });

  it('stops starting requests once `until` says so, well before its duration, and abandons none', async () => {
    const f = fakeClient(() => undefined, 2);
    const s = await runLoad(f.client, 'm', x(1), { concurrency: 4, durationMs: 10_000, until: () => f.calls >= 20 });
    expect(s.elapsedMs).toBeLessThan(5_000);
    expect(s.sent).toBeGreaterThanOrEqual(20);
    expect(s.sent).toBeLessThan(20 + 4);
    expect(s.ok).toBe(s.sent);
    expect(f.inFlight).toBe(0);
  });

  it('records into the stats it is given (a subclass may keep only some outcomes)', async () => {
    const f = fakeClient(() => undefined, 2);
    class OddOnly extends LoadStats {
      private n = 0;
      override recordOk(latencyMs: number, items: number): void {
        if (this.n++ % 2 === 0) super.recordOk(latencyMs, items);
      }
    }
    const stats = new OddOnly();
    const s = await runLoad(f.client, 'm', x(1), { concurrency: 2, durationMs: 10_000, until: () => f.calls >= 20, stats });
    expect(s.sent).toBe(f.calls);
    expect(s.ok).toBe(Math.ceil(f.calls / 2));
    expect(stats.summary(1).ok).toBe(s.ok);
  });

  it('a zero duration sends nothing', async () => {
    const f = fakeClient(() => undefined);
    const s = await runLoad(f.client, 'm', x(1), { concurrency: 3, durationMs: 0 });
    expect(s).toMatchObject({ sent: 0, ok: 0, lost: 0 });
  });

  it.each<[string, object]>([
    ['concurrency 0', { concurrency: 0, durationMs: 10 }],
    ['fractional concurrency', { concurrency: 1.5, durationMs: 10 }],
    ['negative duration', { concurrency: 1, durationMs: -1 }],
    ['NaN duration', { concurrency: 1, durationMs: NaN }],
    ['negative retries', { concurrency: 1, durationMs: 10, retries: -1 }],
    ['zero timeout', { concurrency: 1, durationMs: 10, timeoutMs: 0 }],
  ])('rejects %s with BAD_REQUEST', async (_name, opts) => {
    const f = fakeClient(() => undefined);
    await expect(runLoad(f.client, 'm', x(1), opts as never)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(f.calls).toBe(0);
  });

  it('rejects an invalid model name before sending', async () => {
    const f = fakeClient(() => undefined);
    await expect(runLoad(f.client, 'bad name!', x(1), { concurrency: 1, durationMs: 10 })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(f.calls).toBe(0);
  });

  it('counts items from dims[0] of the first input', () => {
    expect(itemsPerRequest(x(5))).toBe(5);
    expect(itemsPerRequest({ s: fromTypedArray('float32', [], new Float32Array(1)) })).toBe(1);
    expect(itemsPerRequest({})).toBe(1);
  });
});

describe('runLoad against a real cluster', () => {
  let cluster: LocalCluster;
  let client: FlotillaClient;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ workers: 1 });
    client = cluster.client();
    await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('serves mlp at concurrency 8: all answered, none lost, sane percentiles', async () => {
    const progress: LoadSummary[] = [];
    const s = await runLoad(client, 'mlp', x(2), {
      concurrency: 8,
      durationMs: 1500,
      timeoutMs: 10_000,
      onProgress: (p) => progress.push(p),
    });
    expect(s.ok).toBeGreaterThan(0);
    expect(s.ok).toBe(s.sent);
    expect(s.lost).toBe(0);
    expect(s.errored).toEqual({});
    expect(s.items).toBe(2 * s.ok);
    expect(s.itemsPerSec).toBeGreaterThan(0);
    expect(s.requestsPerSec).toBeGreaterThan(0);
    expect(s.latencyMs.p50).toBeGreaterThan(0);
    expect(s.latencyMs.p50).toBeLessThanOrEqual(s.latencyMs.p90);
    expect(s.latencyMs.p90).toBeLessThanOrEqual(s.latencyMs.p99);
    expect(s.latencyMs.p99).toBeLessThanOrEqual(s.latencyMs.max);
    expect(progress.length).toBeGreaterThanOrEqual(1);
  });

  it('reports every request to an unknown model as UNKNOWN_MODEL', async () => {
    const s = await runLoad(client, 'no-such-model', x(1), { concurrency: 2, durationMs: 300 });
    expect(s.sent).toBeGreaterThan(0);
    expect(s.ok).toBe(0);
    expect(s.errored).toEqual({ UNKNOWN_MODEL: s.sent });
    expect(s.lost).toBe(0);
    expect(s.retried).toBe(0);
  });
});
