// Child process of `pnpm bench`, pinned where Flotilla's load generator runs: the Triton peer's
// load generator, a closed loop like runLoad over HTTP/1.1 keep-alive with the KServe v2 binary
// tensor extension (a JSON header, `Inference-Header-Content-Length`, then raw tensor bytes; the
// outputs asked back binary), as Triton's own clients send it. Node rather than tritonclient's
// Python: tritonclient.http.aio cost ≈ 475 µs of CPU per request on its core (mlp, c=128: 706
// requests/s on a third of a core), enough to cap Triton below what its server half can do.
// Latency percentiles come from the same LoadStats as Flotilla's. With `turns`, windows taken in
// turns with Flotilla's load follow (load-windows.ts). Prints one JSON line on stdout.
//   node packages/bench/dist/peer-triton-load.js '{"url":"http://127.0.0.1:8000","model":"bench",…}'
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { closedLoop, type LoadStats } from '@flotilla/loadgen';
import { measureTurns, type TurnArgs } from './load-windows.js';

export interface TritonLoadArgs extends TurnArgs {
  /** tritonserver's HTTP endpoint. */
  url: string;
  model: string;
  /** PyTriton's access token for the restricted APIs (statistics). */
  token: string;
  inputs: Array<{ name: string; dims: number[] }>;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

export interface TritonLoadRun {
  itemsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  sent: number;
  ok: number;
  errored: number;
  errors: Record<string, number>;
  concurrency: number;
  meanBatch: number;
  tritonVersion: string;
  client: string;
  loadAffinity: string;
  /** items/s of each window taken in turns with Flotilla's load (load-windows.ts). */
  turns?: number[];
}

/** One HTTP exchange; resolves with the status, headers and whole body. */
function exchange(
  agent: http.Agent,
  url: URL,
  method: string,
  headers: http.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The infer request's body: the JSON header, then every input's float32 bytes in order. */
function inferBody(inputs: Array<{ name: string; dims: number[]; data: Float32Array }>): { body: Buffer; headerBytes: number } {
  const header = Buffer.from(
    JSON.stringify({
      inputs: inputs.map((t) => ({ name: t.name, shape: t.dims, datatype: 'FP32', parameters: { binary_data_size: t.data.byteLength } })),
      parameters: { binary_data_output: true },
    }),
  );
  const tensors = inputs.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return { body: Buffer.concat([header, ...tensors]), headerBytes: header.byteLength };
}

/** The first output's shape from an infer reply (binary extension or plain JSON). */
function replyShape(headers: http.IncomingHttpHeaders, body: Buffer): number[] | undefined {
  const n = Number(headers['inference-header-content-length'] ?? body.byteLength);
  const json = JSON.parse(body.subarray(0, n).toString()) as { outputs?: Array<{ shape?: number[] }> };
  return json.outputs?.[0]?.shape;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as TritonLoadArgs;
  const agent = new http.Agent({ keepAlive: true, maxSockets: a.concurrency });
  const base = new URL(a.url);
  const inferUrl = new URL(`/v2/models/${a.model}/infer`, base);
  const statsUrl = new URL(`/v2/models/${a.model}/stats`, base);
  const inputs = a.inputs.map((t) => ({
    ...t,
    data: new Float32Array(t.dims.reduce((x, y) => x * y, 1)).map(() => Math.random() * 2 - 1),
  }));
  const { body, headerBytes } = inferBody(inputs);
  const headers = {
    'Content-Type': 'application/octet-stream',
    'Content-Length': body.byteLength,
    'Inference-Header-Content-Length': headerBytes,
  };

  const load = (concurrency: number, durationMs: number, stats?: LoadStats) =>
    closedLoop(
      {
        concurrency,
        durationMs,
        codeOf: (err) => String((err as { code?: unknown }).code ?? (err as Error).name),
        ...(stats ? { stats } : {}),
      },
      async () => {
        const r = await exchange(agent, inferUrl, 'POST', headers, body);
        if (r.status !== 200) throw Object.assign(new Error(r.body.toString().slice(0, 200)), { code: `HTTP_${r.status}` });
        const shape = replyShape(r.headers, r.body);
        if (shape?.[0] !== 1) throw Object.assign(new Error(`reply shape ${JSON.stringify(shape)}`), { code: 'BAD_REPLY' });
        return 1;
      },
    );

  const counts = async (): Promise<{ executions: number; items: number }> => {
    const r = await exchange(agent, statsUrl, 'GET', { 'triton-access-token': a.token });
    if (r.status !== 200) throw new Error(`GET ${statsUrl.pathname}: HTTP ${r.status} ${r.body.toString().slice(0, 200)}`);
    const s = (JSON.parse(r.body.toString()) as { model_stats: Array<{ execution_count: number; inference_count: number }> })
      .model_stats[0]!;
    return { executions: s.execution_count, items: s.inference_count };
  };

  if (a.warmupMs > 0) await load(a.concurrency, a.warmupMs);
  const before = await counts();
  const s = await load(a.concurrency, a.durationMs);
  const after = await counts();
  // Then the windows it takes in turns with Flotilla's (load-windows.ts), if asked.
  const turns = await measureTurns(a, (d, stats) => load(a.concurrency, d, stats));
  const meta = JSON.parse((await exchange(agent, new URL('/v2', base), 'GET', {})).body.toString()) as { version?: string };
  const executions = after.executions - before.executions;
  const run: TritonLoadRun = {
    itemsPerSec: s.itemsPerSec,
    p50Ms: s.ok ? s.latencyMs.p50 : null,
    p99Ms: s.ok ? s.latencyMs.p99 : null,
    sent: s.sent,
    ok: s.ok,
    errored: Object.values(s.errored).reduce((x, y) => x + y, 0),
    errors: s.errored,
    concurrency: a.concurrency,
    meanBatch: executions > 0 ? Math.round(((after.items - before.items) / executions) * 10) / 10 : 0,
    tritonVersion: meta.version ?? '?',
    client: `Node ${process.version} http keep-alive, KServe v2 binary tensors`,
    loadAffinity: affinity(),
    ...(turns.length ? { turns: turns.map((t) => t.itemsPerSec) } : {}),
  };
  agent.destroy();
  process.stdout.write(`${JSON.stringify(run)}\n`);
}

/** This process's CPU list as `taskset -cp` reads it back ('?' without taskset). */
function affinity(): string {
  try {
    return execFileSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' })
      .split(':')
      .pop()!
      .trim();
  } catch {
    return '?';
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`peer-triton-load: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
