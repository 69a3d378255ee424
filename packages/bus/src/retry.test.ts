// The retry module on a fake clock: back-off tables, retryable by code and by predicate,
// attempts and deadlines (never slept past; the last attempt is told what is left).
import { DeadlineExceededError, FlotillaError, OverloadedError, UnavailableError, ErrorCode } from '@flotilla/protocol';
import {
  DEFAULT_RETRY_POLICY,
  STORE_WRITE_RETRY_POLICY,
  nextDelay,
  parseRetryPolicy,
  retry,
  type AttemptContext,
  type RetryEvent,
  type RetryOptions,
  type RetryPolicy,
} from './retry.js';

const policy = (p: Partial<RetryPolicy>): RetryPolicy => parseRetryPolicy(p);

describe('nextDelay', () => {
  const noJitter = policy({ jitter: 0 });
  it.each<[string, RetryPolicy, number, number, number]>([
    // name, policy, n, rand, expected ms
    ['first back-off is the initial interval', noJitter, 1, 0.5, 50],
    ['doubles', noJitter, 2, 0.5, 100],
    ['doubles again', noJitter, 3, 0.5, 200],
    ['still under the cap', noJitter, 4, 0.5, 400],
    ['capped at the maximum', noJitter, 5, 0.5, 500],
    ['stays capped', noJitter, 40, 0.5, 500],
    ['no overflow far out', noJitter, 5000, 0.5, 500],
    ['defaults: rand 0.5 is the nominal value', DEFAULT_RETRY_POLICY, 1, 0.5, 50],
    ['defaults: rand 0 is 20 % less', DEFAULT_RETRY_POLICY, 1, 0, 40],
    ['defaults: rand→1 is up to 20 % more', DEFAULT_RETRY_POLICY, 2, 0.9999999, 120],
    ['jitter never goes above the maximum', DEFAULT_RETRY_POLICY, 9, 0.9999999, 500],
    ['jitter below the maximum at the cap', DEFAULT_RETRY_POLICY, 9, 0, 400],
    ['constant policy', policy({ initialIntervalMs: 100, backoffCoefficient: 1, maximumIntervalMs: 100, jitter: 0 }), 7, 0.3, 100],
    ['store writes: 100 ms doubling', STORE_WRITE_RETRY_POLICY, 3, 0.9, 400],
    ['store writes: capped at 1 s', STORE_WRITE_RETRY_POLICY, 6, 0.1, 1000],
    ['zero initial interval', policy({ initialIntervalMs: 0, maximumIntervalMs: 0 }), 3, 0.9, 0],
  ])('%s', (_name, p, n, r, expected) => {
    expect(nextDelay(n, p, () => r)).toBe(expected);
  });
});

describe('parseRetryPolicy', () => {
  it('adds the defaults and never mutates its input', () => {
    const raw = { maximumAttempts: 3 };
    const p = parseRetryPolicy(raw);
    expect(p).toEqual({ ...DEFAULT_RETRY_POLICY, maximumAttempts: 3 });
    expect(raw).toEqual({ maximumAttempts: 3 });
    expect(Object.isFrozen(p)).toBe(true);
  });
  it.each<[string, Partial<RetryPolicy>]>([
    ['negative initial interval', { initialIntervalMs: -1 }],
    ['coefficient below 1', { backoffCoefficient: 0.5 }],
    ['maximum below initial', { initialIntervalMs: 100, maximumIntervalMs: 10 }],
    ['jitter of 1', { jitter: 1 }],
    ['NaN jitter', { jitter: NaN }],
    ['zero attempts', { maximumAttempts: 0 }],
    ['fractional attempts', { maximumAttempts: 1.5 }],
  ])('refuses %s with BAD_REQUEST', (_name, raw) => {
    expect(() => parseRetryPolicy(raw)).toThrow(expect.objectContaining({ code: ErrorCode.BAD_REQUEST }));
  });
});

/** A fake clock: sleeping advances it; every sleep is recorded. */
function fakeTime(start = 1_000_000) {
  let t = start;
  const slept: number[] = [];
  return {
    slept,
    now: () => t,
    advance: (ms: number) => (t += ms),
    opts: {
      now: () => t,
      sleep: async (ms: number) => {
        slept.push(ms);
        t += ms;
      },
      rand: () => 0.5,
    } satisfies RetryOptions,
  };
}

/** fn failing with `errors[i]` on attempt i+1, then returning 'ok'; each attempt takes `tookMs`. */
function script(clock: ReturnType<typeof fakeTime>, errors: unknown[], tookMs = 0) {
  const seen: AttemptContext[] = [];
  const fn = async (ctx: AttemptContext) => {
    seen.push(ctx);
    clock.advance(tookMs);
    const e = errors[ctx.attempt - 1];
    if (e !== undefined) throw e;
    return 'ok';
  };
  return { fn, seen };
}

describe('retry', () => {
  const overloaded = () => new OverloadedError('full');

  it('retries retryable codes with the policy back-off and returns the first success', async () => {
    const c = fakeTime();
    const s = script(c, [overloaded(), new UnavailableError('gone'), overloaded()]);
    const events: RetryEvent[] = [];
    await expect(retry(s.fn, { ...c.opts, policy: { jitter: 0 }, onRetry: (e) => events.push(e) })).resolves.toBe('ok');
    expect(s.seen.map((x) => x.attempt)).toEqual([1, 2, 3, 4]);
    expect(c.slept).toEqual([50, 100, 200]);
    expect(events.map((e) => [e.attempt, e.delayMs, (e.error as FlotillaError).code])).toEqual([
      [1, 50, 'OVERLOADED'],
      [2, 100, 'UNAVAILABLE'],
      [3, 200, 'OVERLOADED'],
    ]);
  });

  it.each<[string, unknown]>([
    ['a non-retryable code', new FlotillaError(ErrorCode.INPUT_MISMATCH, 'bad')],
    ['DEADLINE_EXCEEDED (not retryable by code)', new DeadlineExceededError('late')],
    ['an uncoded error', new Error('boom')],
    ['a thrown string', 'boom'],
  ])('throws %s at once', async (_name, err) => {
    const c = fakeTime();
    const s = script(c, [err]);
    await expect(retry(s.fn, c.opts)).rejects.toBe(err);
    expect(s.seen).toHaveLength(1);
    expect(c.slept).toEqual([]);
  });

  it('maximumAttempts counts every attempt: 3 means 2 retries, then the last error as is', async () => {
    const c = fakeTime();
    const errors = [overloaded(), overloaded(), overloaded(), overloaded()];
    const s = script(c, errors);
    let retries = 0;
    await expect(retry(s.fn, { ...c.opts, policy: { maximumAttempts: 3 }, onRetry: () => retries++ })).rejects.toBe(errors[2]);
    expect(s.seen).toHaveLength(3);
    expect(retries).toBe(2);
  });

  it('maximumAttempts 1: no retry at all', async () => {
    const c = fakeTime();
    const s = script(c, [overloaded()]);
    await expect(retry(s.fn, { ...c.opts, policy: { maximumAttempts: 1 } })).rejects.toMatchObject({ code: 'OVERLOADED' });
    expect(s.seen).toHaveLength(1);
  });

  it('the caller predicate decides; "immediately" retries without back-off and without growing it', async () => {
    const c = fakeTime();
    const timeout = new Error('attempt timed out');
    const s = script(c, [timeout, overloaded(), timeout, overloaded()]);
    const isRetryable = (err: unknown) => (err === timeout ? 'immediately' : err instanceof OverloadedError);
    await expect(retry(s.fn, { ...c.opts, policy: { jitter: 0 }, isRetryable })).resolves.toBe('ok');
    expect(c.slept).toEqual([50, 100]); // the two timeouts did not sleep nor advance the back-off
    expect(s.seen).toHaveLength(5);
  });

  it('each attempt is told the time left; the last one gets what is left', async () => {
    const c = fakeTime();
    const s = script(c, [overloaded(), overloaded()], 300);
    await expect(retry(s.fn, { ...c.opts, policy: { jitter: 0 }, deadline: c.now() + 1000 })).resolves.toBe('ok');
    // 0: attempt 1 (300) | 300: back-off 50 | 350: attempt 2 (300) | 650: back-off 100 | 750: attempt 3, 250 ms left
    expect(s.seen.map((x) => x.remainingMs)).toEqual([1000, 650, 250]);
  });

  it('never sleeps past the deadline: a back-off that would reach it ends the retries', async () => {
    const c = fakeTime();
    const errors = [overloaded(), overloaded(), overloaded(), overloaded()];
    const s = script(c, errors, 300);
    const deadline = c.now() + 1000;
    const reasons: string[] = [];
    const out = new Error('gave up');
    await expect(
      retry(s.fn, { ...c.opts, policy: { jitter: 0 }, deadline, onExhausted: (_e, x) => (reasons.push(`${x.reason}:${x.attempts}`), out) }),
    ).rejects.toBe(out);
    expect(reasons).toEqual(['deadline:3']);
    expect(c.slept).toEqual([50, 100]); // the third back-off (200 ms) would have ended at 1250 > 1000
    expect(c.now()).toBeLessThanOrEqual(deadline + 50); // the last attempt ran over by itself, not by a sleep
  });

  it('an immediate retry after the deadline ends with the last error', async () => {
    const c = fakeTime();
    const timeout = new DeadlineExceededError('attempt timed out');
    const s = script(c, [timeout, timeout], 600);
    await expect(retry(s.fn, { ...c.opts, deadline: c.now() + 1000, isRetryable: () => 'immediately' })).rejects.toBe(timeout);
    expect(s.seen.map((x) => x.remainingMs)).toEqual([1000, 400]);
  });

  it('a deadline already passed runs no attempt: DEADLINE_EXCEEDED, or what onExhausted makes of it', async () => {
    const c = fakeTime();
    const s = script(c, []);
    await expect(retry(s.fn, { ...c.opts, deadline: c.now() })).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    const exhausted: unknown[] = [];
    await expect(
      retry(s.fn, { ...c.opts, deadline: c.now() - 1, onExhausted: (e, x) => (exhausted.push([e, x]), new Error('late')) }),
    ).rejects.toThrow('late');
    expect(exhausted).toEqual([[undefined, { attempts: 0, reason: 'deadline' }]]);
    expect(s.seen).toHaveLength(0);
  });

  it('store-write preset: every error retried, 100 ms doubling, gives up before a back-off passes 8 s', async () => {
    const c = fakeTime();
    let attempts = 0;
    const fail = async () => {
      attempts++;
      throw new Error('no JetStream leader');
    };
    await expect(
      retry(fail, { ...c.opts, policy: STORE_WRITE_RETRY_POLICY, deadline: c.now() + 8000, isRetryable: () => true }),
    ).rejects.toThrow('no JetStream leader');
    expect(c.slept).toEqual([100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000, 1000]);
    expect(attempts).toBe(11);
  });

  it('runs on the real clock too (default sleep)', async () => {
    const s = script(fakeTime(), [overloaded()]);
    const t0 = Date.now();
    await expect(retry(s.fn, { policy: { initialIntervalMs: 20, jitter: 0 } })).resolves.toBe('ok');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(19);
  });
});
