import { DEFAULT_MAX_JSON_DEPTH, jsonDepthExceeded } from './json-depth.js';
import { DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, parseGatewayOptions, type GatewayOptions } from './gateway-options.js';

describe('jsonDepthExceeded', () => {
  it.each([
    ['{}', 1, -1],
    ['[]', 1, -1],
    ['[[]]', 1, 1],
    ['[[]]', 2, -1],
    ['{"a":{"b":[1,2,{"c":3}]}}', 4, -1],
    ['{"a":{"b":[1,2,{"c":3}]}}', 3, 15],
    ['[[],[],[]]', 2, -1], // siblings do not add up
    ['"[[[[[["', 1, -1], // brackets in strings do not count
    ['{"k":"a\\"[[[[","v":[]}', 2, -1], // an escaped quote does not end the string
    ['{"k":"a\\\\","v":[[[]]]}', 3, 17], // an escaped backslash does: the brackets after it count
    ['["unterminated [[[[', 1, -1], // left to JSON.parse
    ['1234', 1, -1],
    ['', 1, -1],
  ])('%s with limit %i → %i', (text, limit, at) => {
    expect(jsonDepthExceeded(text, limit)).toBe(at);
  });

  it('stops at the first level past the limit of 100,000 nested arrays or objects', () => {
    expect(jsonDepthExceeded('['.repeat(100_000) + ']'.repeat(100_000), DEFAULT_MAX_JSON_DEPTH)).toBe(DEFAULT_MAX_JSON_DEPTH);
    expect(jsonDepthExceeded('{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000), 64)).toBe(64 * 5);
  });

  it('is linear: 8 MB of numbers scans in about the time 1 MB takes × 8', () => {
    const body = (n: number) => `{"inputs":[{"name":"x","data":[${Array.from({ length: n }, (_, i) => (i % 97) / 97).join(',')}]}]}`;
    const small = body(50_000);
    const large = body(400_000);
    const time = (s: string) => {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        expect(jsonDepthExceeded(s, 64)).toBe(-1);
        best = Math.min(best, performance.now() - t0);
      }
      return best;
    };
    time(small); // warm-up
    expect(time(large)).toBeLessThan(Math.max(time(small), 0.5) * 8 * 3);
  });
});

describe('parseGatewayOptions', () => {
  const base = { client: {} as GatewayOptions['client'], port: 0 };

  it('adds the documented defaults and derives the check interval', () => {
    const o = parseGatewayOptions(base);
    expect(o).toMatchObject({
      host: '0.0.0.0',
      maxJsonDepth: 64,
      headersTimeoutMs: DEFAULT_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: 5000,
      connectionTimeoutMs: 60_000,
      readyTimeoutMs: 2000,
      probeSignatures: true,
      timeoutCheckIntervalMs: 1000,
    });
    expect(parseGatewayOptions({ ...base, headersTimeoutMs: 400 }).timeoutCheckIntervalMs).toBe(100);
    expect(parseGatewayOptions({ ...base, headersTimeoutMs: 40 }).timeoutCheckIntervalMs).toBe(50);
  });

  it('never mutates its input', () => {
    const raw = { ...base, headersTimeoutMs: 1000 };
    const copy = { ...raw };
    parseGatewayOptions(raw);
    expect(raw).toEqual(copy);
  });

  it.each<[Partial<GatewayOptions>, RegExp]>([
    [{ headersTimeoutMs: 0 }, /headersTimeoutMs must be an integer in \[1, 3600000\], got 0/],
    [{ requestTimeoutMs: -1 }, /requestTimeoutMs/],
    [{ keepAliveTimeoutMs: 1.5 }, /keepAliveTimeoutMs/],
    [{ connectionTimeoutMs: Number.NaN }, /connectionTimeoutMs/],
    [{ maxJsonDepth: 0 }, /maxJsonDepth/],
    [{ bodyLimitBytes: 0 }, /bodyLimitBytes/],
    [{ port: 70_000 }, /port/],
    [{ headersTimeoutMs: 5000, requestTimeoutMs: 1000 }, /headersTimeoutMs \(5000\) must not exceed requestTimeoutMs \(1000\)/],
  ])('refuses %j with BAD_REQUEST', (bad, message) => {
    expect(() => parseGatewayOptions({ ...base, ...bad })).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringMatching(message) }),
    );
  });

  it('a request timeout of 0 (none) allows any headers timeout', () => {
    expect(parseGatewayOptions({ ...base, requestTimeoutMs: 0, headersTimeoutMs: 900_000 }).timeoutCheckIntervalMs).toBe(1000);
  });
});
