// Integration: a real local cluster (nats-server, head, worker with onnxruntime), the gateway on a
// free port, and real HTTP requests.
import { once } from 'node:events';
import { deflateSync, gzipSync } from 'node:zlib';
import { connect, type Socket } from 'node:net';
import { FlotillaClient, type Tensor } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { ErrorCode } from '@flotilla/protocol';
import { httpStatusForCode, parseTimeoutHeader, startGateway, type Gateway } from './gateway.js';

let cluster: LocalCluster;
let client: FlotillaClient;
let gateway: Gateway;
let base: string;

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1 });
  client = cluster.client();
  await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
  await client.deploy(sampleModelPath('mlp'), 'idle', { device: 'cpu', replicas: 0, wait: false });
  // The same model, slowed: a lone request waits 600 ms for company before its batch runs.
  await client.deploy(sampleModelPath('mlp'), 'slow', { device: 'cpu', batching: { maxBatchSize: 64, maxQueueDelayMs: 600 } });
  gateway = await startGateway({ client, port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${gateway.port}`;
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await cluster?.stop();
});

async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(base + path);
  return { status: res.status, body: await res.json() };
}

async function post(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

const mlpRequest = (x: Float32Array, n: number, extra: object = {}) => ({
  inputs: [{ name: 'x', shape: [n, 16], datatype: 'FP32', data: Array.from(x) }],
  ...extra,
});

describe('KServe v2 gateway', () => {
  it('answers health and server metadata', async () => {
    expect(await get('/v2/health/live')).toEqual({ status: 200, body: { live: true } });
    expect(await get('/v2/health/ready')).toEqual({ status: 200, body: { ready: true } });
    expect(await get('/v2')).toEqual({
      status: 200,
      body: { name: 'flotilla', version: expect.any(String), extensions: ['binary_tensor_data', 'statistics'] },
    });
  });

  it('says whether a model is ready: 200 ready, 503 without ready replicas, 404 unknown', async () => {
    expect(await get('/v2/models/mlp/ready')).toMatchObject({ status: 200, body: { name: 'mlp', ready: true } });
    expect(await get('/v2/models/idle/ready')).toMatchObject({ status: 503, body: { name: 'idle', ready: false } });
    const unknown = await get('/v2/models/nope/ready');
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe(ErrorCode.UNKNOWN_MODEL);
    expect(unknown.body.error).toMatch(/^UNKNOWN_MODEL: /);
  });

  it('lists models and gives model metadata with the signature learned from a replica', async () => {
    const list = await get('/v2/models');
    expect(list.status).toBe(200);
    expect(list.body.models.map((m: { name: string }) => m.name).sort()).toEqual(['idle', 'mlp', 'slow']);
    const meta = await get('/v2/models/mlp');
    expect(meta.status).toBe(200);
    expect(meta.body).toMatchObject({
      name: 'mlp',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 16] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }],
    });
    const idle = await get('/v2/models/idle');
    expect(idle.body).toMatchObject({ name: 'idle', inputs: [], outputs: [], parameters: { signature_known: false } });
    expect((await get('/v2/models/nope')).status).toBe(404);
  });

  it('takes model metadata from the deployment signature, with probing off', async () => {
    const g = await startGateway({ client, port: 0, host: '127.0.0.1', probeSignatures: false });
    try {
      const res = await fetch(`http://127.0.0.1:${g.port}/v2/models/mlp`);
      expect(await res.json()).toMatchObject({
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 16] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }],
        parameters: { signature_known: true },
      });
    } finally {
      await g.close();
    }
  });

  it('infers with the same outputs as the SDK on the same input', async () => {
    const x = randomFloats(3 * 16, 7);
    const expected = await client.infer('mlp', { x: { dtype: 'float32', dims: [3, 16], data: x } as Tensor });
    const res = await post('/v2/models/mlp/infer', mlpRequest(x, 3, { id: 'req-1' }));
    expect(res.status).toBe(200);
    expect(res.body.model_name).toBe('mlp');
    expect(res.body.id).toBe('req-1');
    expect(res.headers.get('x-flotilla-worker')).toBe('w0');
    const [y] = res.body.outputs;
    expect(y).toMatchObject({ name: 'y', datatype: 'FP32', shape: [3, 4] });
    const want = expected.y!.data as Float32Array;
    expect(y.data).toHaveLength(want.length);
    y.data.forEach((v: number, i: number) => expect(Math.abs(v - want[i]!)).toBeLessThanOrEqual(1e-6));

    // Requested outputs, a generated id, and a deadline header.
    const sub = await post('/v2/models/mlp/infer', mlpRequest(x, 3, { outputs: [{ name: 'y' }] }), { 'x-flotilla-timeout-ms': '5000' });
    expect(sub.status).toBe(200);
    expect(sub.body.outputs.map((o: { name: string }) => o.name)).toEqual(['y']);
    expect(typeof sub.body.id).toBe('string');
  });

  it('maps errors to HTTP statuses with coded JSON bodies, and keeps serving', async () => {
    const x = randomFloats(16, 1);
    const unknown = await post('/v2/models/nope/infer', mlpRequest(x, 1));
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'UNKNOWN_MODEL', error: expect.stringMatching(/^UNKNOWN_MODEL: /) });

    const wrongShape = await post('/v2/models/mlp/infer', {
      inputs: [{ name: 'x', shape: [2, 8], datatype: 'FP32', data: Array.from(x) }],
    });
    expect(wrongShape.status).toBe(400);
    expect(wrongShape.body.code).toBe('INPUT_MISMATCH');

    const invalid = await post('/v2/models/mlp/infer', '{"inputs": [ {');
    expect(invalid.status).toBe(400);
    expect(invalid.body).toMatchObject({ code: 'BAD_REQUEST', error: expect.stringMatching(/^BAD_REQUEST: invalid JSON/) });

    const badType = await post('/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 16], datatype: 'BYTES', data: Array.from(x) }] });
    expect(badType).toMatchObject({ status: 400, body: { code: 'BAD_REQUEST' } });
    expect((await post('/v2/models/mlp/infer', { inputs: [] })).status).toBe(400);
    expect((await post('/v2/models/mlp/infer', mlpRequest(x, 1), { 'x-flotilla-timeout-ms': 'soon' })).body.code).toBe('BAD_REQUEST');
    expect((await post('/v2/models/mlp/infer', mlpRequest(x, 1, { outputs: [{ name: 'zz' }] }))).body.code).toBe('BAD_REQUEST');
    expect(await get('/v2/nothing-here')).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });

    const good = await post('/v2/models/mlp/infer', mlpRequest(x, 1));
    expect(good.status).toBe(200);
    expect(good.body.outputs[0].shape).toEqual([1, 4]);
  });

  it('refuses bodies above the limit with 413 PAYLOAD_TOO_LARGE', async () => {
    const small = await startGateway({ client, port: 0, host: '127.0.0.1', bodyLimitBytes: 1024 });
    try {
      const res = await fetch(`http://127.0.0.1:${small.port}/v2/models/mlp/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(mlpRequest(randomFloats(64 * 16, 2), 64)),
      });
      expect(res.status).toBe(413);
      expect(await res.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
      // The limit counts inflated bytes: 200 KB of zeros gzip to a few hundred bytes.
      const bomb = gzipSync(Buffer.alloc(200_000, 0x20));
      expect(bomb.length).toBeLessThan(1024);
      const inflated = await fetch(`http://127.0.0.1:${small.port}/v2/models/mlp/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: bomb,
      });
      expect(inflated.status).toBe(413);
    } finally {
      await small.close();
    }
  });

  it('answers 400 BAD_REQUEST (not 500) to a body nested 100,000 deep, and keeps serving', async () => {
    const arrays = await post('/v2/models/mlp/infer', '['.repeat(100_000) + ']'.repeat(100_000));
    expect(arrays.status).toBe(400);
    expect(arrays.body).toMatchObject({
      code: 'BAD_REQUEST',
      error: expect.stringMatching(/^BAD_REQUEST: invalid JSON body: nested deeper than 64 levels/),
    });
    const objects = await post('/v2/models/mlp/infer', '{"inputs":' + '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_001));
    expect(objects).toMatchObject({ status: 400, body: { code: 'BAD_REQUEST' } });
    // Brackets inside strings are not nesting; a normal request still works.
    const x = randomFloats(16, 3);
    const inString = await post('/v2/models/mlp/infer', mlpRequest(x, 1, { id: '['.repeat(1000) }));
    expect(inString.status).toBe(200);
    expect(inString.body.id).toBe('['.repeat(1000));
  });

  it('is not ready when no head answers', async () => {
    const orphan = new FlotillaClient({ servers: cluster.url, cluster: 'no-head-here' });
    const g = await startGateway({ client: orphan, port: 0, host: '127.0.0.1', readyTimeoutMs: 1000 });
    try {
      const res = await fetch(`http://127.0.0.1:${g.port}/v2/health/ready`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ ready: false, code: 'UNAVAILABLE' });
      expect((await fetch(`http://127.0.0.1:${g.port}/v2/health/live`)).status).toBe(200);
    } finally {
      await g.close();
      await orphan.close();
    }
  });
});

describe('KServe v2 extensions over HTTP', () => {
  const x = randomFloats(100 * 16, 11);
  const sdk = async () =>
    (await client.infer('mlp', { x: { dtype: 'float32', dims: [100, 16], data: x } as Tensor })).y!.data as Float32Array;
  const stats = async () => (await get('/v2/models/mlp/stats')).body.model_stats[0];

  it('takes binary inputs and returns binary outputs (Inference-Header-Content-Length, application/octet-stream)', async () => {
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'x', shape: [100, 16], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
        parameters: { binary_data_output: true },
      }),
    );
    const res = await fetch(`${base}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
      body: Buffer.concat([header, Buffer.from(x.buffer, x.byteOffset, x.byteLength)]),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    const body = Buffer.from(await res.arrayBuffer());
    const n = Number(res.headers.get('inference-header-content-length'));
    const json = JSON.parse(body.subarray(0, n).toString());
    expect(json.outputs).toEqual([{ name: 'y', shape: [100, 4], datatype: 'FP32', parameters: { binary_data_size: 1600 } }]);
    expect(body.length).toBe(n + 1600);
    const y = new Float32Array(body.buffer.slice(body.byteOffset + n, body.byteOffset + n + 1600));
    expect(Array.from(y)).toEqual(Array.from(await sdk()));
  });

  it('inflates gzip and deflate bodies and compresses responses on Accept-Encoding', async () => {
    const want = Array.from(await sdk());
    for (const [encoding, pack] of [
      ['gzip', gzipSync],
      ['deflate', deflateSync],
    ] as const) {
      const res = await fetch(`${base}/v2/models/mlp/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': encoding, 'accept-encoding': encoding },
        body: pack(Buffer.from(JSON.stringify(mlpRequest(x, 100)))),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-encoding')).toBe(encoding); // fetch inflates it again below
      const body = (await res.json()) as { outputs: Array<{ data: number[] }> };
      expect(body.outputs[0]!.data.map((v) => Math.fround(v))).toEqual(want);
    }
    const bad = await post('/v2/models/mlp/infer', 'not gzip', { 'content-encoding': 'gzip' });
    expect(bad).toMatchObject({ status: 400, body: { code: 'BAD_REQUEST' } });
    const br = await post('/v2/models/mlp/infer', 'x', { 'content-encoding': 'compress' });
    expect(br).toMatchObject({
      status: 415,
      body: { code: 'BAD_REQUEST', error: expect.stringMatching(/Unsupported Content-Encoding: compress/) },
    });
  });

  it('answers content-type application/json exactly, for results and errors', async () => {
    const ok = await post('/v2/models/mlp/infer', mlpRequest(x.subarray(0, 16), 1));
    expect(ok.headers.get('content-type')).toBe('application/json');
    const bad = await post('/v2/models/nope/infer', mlpRequest(x.subarray(0, 16), 1));
    expect(bad.status).toBe(404);
    expect(bad.headers.get('content-type')).toBe('application/json');
    expect((await fetch(`${base}/v2/models/mlp`)).headers.get('content-type')).toBe('application/json');
  });

  it('parses bare NaN and Infinity (as tritonclient sends them)', async () => {
    const data = Array.from(x.subarray(0, 16), String);
    data[0] = 'NaN';
    data[1] = 'Infinity';
    const text = `{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[${data.join(',')}]}]}`;
    const res = await post('/v2/models/mlp/infer', text);
    expect(res.status).toBe(200);
    expect(res.body.outputs[0].data).toContain('NaN'); // written back as strings: JSON has no NaN
  });

  it('serves version 1 under /versions/1 and answers 404 UNKNOWN_MODEL for others', async () => {
    expect((await post('/v2/models/mlp/versions/1/infer', mlpRequest(x.subarray(0, 16), 1))).body.model_version).toBe('1');
    expect(await get('/v2/models/mlp/versions/1/ready')).toMatchObject({ status: 200, body: { ready: true } });
    expect(await get('/v2/models/mlp/versions/1')).toMatchObject({ status: 200, body: { name: 'mlp', versions: ['1'] } });
    for (const path of ['/v2/models/mlp/versions/2', '/v2/models/mlp/versions/2/ready', '/v2/models/mlp/versions/2/stats']) {
      expect(await get(path)).toMatchObject({
        status: 404,
        body: { code: 'UNKNOWN_MODEL', error: expect.stringMatching(/no version '2'/) },
      });
    }
    const infer2 = await post('/v2/models/mlp/versions/2/infer', mlpRequest(x.subarray(0, 16), 1));
    expect(infer2).toMatchObject({ status: 404, body: { code: 'UNKNOWN_MODEL' } });
  });

  it('keeps statistics from real counters: successes, failures, items, batch sizes', async () => {
    const before = await stats();
    await post('/v2/models/mlp/infer', mlpRequest(x.subarray(0, 48), 3));
    await post('/v2/models/mlp/infer', mlpRequest(x.subarray(0, 16), 1));
    await post('/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 8], datatype: 'FP32', data: Array.from(x.subarray(0, 8)) }] });
    const after = await stats();
    expect(after).toMatchObject({ name: 'mlp', version: '1' });
    expect(after.execution_count - before.execution_count).toBe(2);
    expect(after.inference_count - before.inference_count).toBe(4);
    expect(after.inference_stats.success.count - before.inference_stats.success.count).toBe(2);
    expect(after.inference_stats.fail.count - before.inference_stats.fail.count).toBe(1);
    expect(after.inference_stats.success.ns).toBeGreaterThan(before.inference_stats.success.ns);
    expect(after.last_inference).toBeGreaterThanOrEqual(before.last_inference);
    expect(after.batch_stats.length).toBeGreaterThan(0);
    const all = await get('/v2/models/stats');
    expect(all.body.model_stats.map((m: { name: string }) => m.name).sort()).toEqual(['idle', 'mlp', 'slow']);
    expect((await get('/v2/models/nope/stats')).status).toBe(404);
  });
});

describe('slow clients', () => {
  /** A raw TCP client: what it got back, and when the gateway closed it (ms after it connected). */
  async function rawClient(port: number, behave: (sock: Socket) => void): Promise<{ ms: number; got: string }> {
    const sock = connect(port, '127.0.0.1');
    await once(sock, 'connect');
    const t0 = performance.now();
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.on('error', () => undefined); // a reset is a close too
    const closed = once(sock, 'close');
    behave(sock);
    await closed;
    return { ms: performance.now() - t0, got };
  }
  const HALF_HEADERS = 'POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appli';

  it('cuts off slow-loris clients within the headers timeout while normal requests are served', async () => {
    const g = await startGateway({ client, port: 0, host: '127.0.0.1', headersTimeoutMs: 1000, requestTimeoutMs: 2000 });
    const timers: NodeJS.Timeout[] = [];
    try {
      const url = `http://127.0.0.1:${g.port}/v2/models/mlp/infer`;
      const [stalled, trickling, slowBody, normal] = await Promise.all([
        // Half the headers, then nothing.
        rawClient(g.port, (s) => s.write(HALF_HEADERS)),
        // One header byte every 100 ms: never idle, never done.
        rawClient(g.port, (s) => {
          s.write('GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n');
          let i = 0;
          const t = setInterval(() => !s.destroyed && s.write('X-Slow: yes\r\n'[i++ % 13]!), 100);
          timers.push(t);
          s.once('close', () => clearInterval(t));
        }),
        // Headers complete, then 10 of the 1000 body bytes announced.
        rawClient(g.port, (s) =>
          s.write(
            'POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"inputs":',
          ),
        ),
        // Meanwhile a normal client is served.
        (async () => {
          await new Promise((r) => setTimeout(r, 300));
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(mlpRequest(randomFloats(16, 4), 1)),
          });
          return { status: res.status, body: (await res.json()) as { outputs: Array<{ shape: number[] }> } };
        })(),
      ]);
      for (const loris of [stalled, trickling]) {
        expect(loris.ms).toBeGreaterThanOrEqual(900);
        expect(loris.ms).toBeLessThan(2500); // headers timeout 1 s + check interval 250 ms + slack
        expect(loris.got).toMatch(/^HTTP\/1\.1 408/);
      }
      expect(slowBody.ms).toBeGreaterThanOrEqual(1900);
      expect(slowBody.ms).toBeLessThan(3500); // request timeout 2 s + check interval + slack
      expect(slowBody.got).toMatch(/^HTTP\/1\.1 408/);
      expect(normal.status).toBe(200);
      expect(normal.body.outputs[0]!.shape).toEqual([1, 4]);
    } finally {
      timers.forEach(clearInterval);
      await g.close();
    }
  });

  it('closes idle connections after the connection timeout, but not while a longer inference runs', async () => {
    const g = await startGateway({ client, port: 0, host: '127.0.0.1', connectionTimeoutMs: 300 });
    try {
      const idle = await rawClient(g.port, (s) => s.write(HALF_HEADERS));
      expect(idle.ms).toBeGreaterThanOrEqual(250);
      expect(idle.ms).toBeLessThan(1500);
      // 'slow' answers after ~600 ms of silence on the socket: the request's deadline extends the idle timeout.
      const t0 = performance.now();
      const res = await fetch(`http://127.0.0.1:${g.port}/v2/models/slow/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-flotilla-timeout-ms': '10000' },
        body: JSON.stringify(mlpRequest(randomFloats(16, 5), 1)),
      });
      expect(res.status).toBe(200);
      expect(performance.now() - t0).toBeGreaterThan(400);
    } finally {
      await g.close();
    }
  });
});

describe('error mapping (pure)', () => {
  it.each([
    ['UNKNOWN_MODEL', 404],
    ['BAD_REQUEST', 400],
    ['INPUT_MISMATCH', 400],
    ['DECODE_ERROR', 400],
    ['PAYLOAD_TOO_LARGE', 413],
    ['OVERLOADED', 503],
    ['UNAVAILABLE', 503],
    ['NO_CAPACITY', 503],
    ['DEADLINE_EXCEEDED', 504],
    ['MODEL_LOAD_FAILED', 500],
    ['INTERNAL', 500],
    ['SOMETHING_NEW', 500],
  ])('%s → %i', (code, status) => {
    expect(httpStatusForCode(code)).toBe(status);
  });

  it('parses the timeout header', () => {
    expect(parseTimeoutHeader(undefined)).toBeUndefined();
    expect(parseTimeoutHeader('250')).toBe(250);
    for (const bad of ['', '0', '-1', 'abc', '1e12']) expect(() => parseTimeoutHeader(bad)).toThrow(/x-flotilla-timeout-ms/);
  });
});
