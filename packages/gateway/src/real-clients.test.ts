// Real KServe v2 / Triton clients against a real cluster: the gateway (HTTP and gRPC) in front of a
// LocalCluster, and test-clients/real_clients.py run in the project's venv (.cache/kserve-venv,
// made by scripts/setup: tritonclient[http,grpc], kserve, onnxruntime), which compares every output
// with onnxruntime on the same .onnx file. Skipped, saying why, only when python3 is absent.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { FlotillaClient } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { startGateway, type Gateway } from './gateway.js';

const ROOT = resolve(__dirname, '../../..');
const VENV_PYTHON = join(ROOT, '.cache/kserve-venv/bin/python');
const SCRIPT = join(ROOT, 'packages/gateway/test-clients/real_clients.py');
const MODELS = ['mlp', 'affine', 'fixed'] as const;
const hasPython = spawnSync('python3', ['--version']).status === 0;
if (!hasPython) process.stdout.write('real-clients.test: skipped: python3 is not installed (the KServe/Triton clients are Python)\n');
const describeIfPython = hasPython ? describe : describe.skip;

interface Row {
  client: string;
  mode: string;
  model: string;
  pass: boolean;
  maxAbsDiff: number | null;
  why: string;
}

function runPython(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const p = spawn(VENV_PYTHON, [SCRIPT, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', fail);
    p.on('close', (code) => done({ code, stdout, stderr }));
  });
}

describeIfPython('real KServe v2 clients (tritonclient, kserve) over HTTP and gRPC', () => {
  let cluster: LocalCluster;
  let client: FlotillaClient;
  let gateway: Gateway;

  beforeAll(async () => {
    if (!existsSync(VENV_PYTHON)) throw new Error(`${VENV_PYTHON} is missing: run scripts/setup (it makes the clients' venv)`);
    cluster = await LocalCluster.start({ workers: 1 });
    client = cluster.client();
    for (const m of MODELS) await client.deploy(sampleModelPath(m), m, { device: 'cpu' });
    gateway = await startGateway({ client, port: 0, grpcPort: 0, host: '127.0.0.1' });
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    await cluster?.stop();
  });

  it('every client and mode gets onnxruntime outputs, and the protocol checks pass', async () => {
    const modelsDir = dirname(sampleModelPath('mlp'));
    const { code, stdout, stderr } = await runPython([
      '--http',
      `127.0.0.1:${gateway.port}`,
      '--grpc',
      `127.0.0.1:${gateway.grpcPort}`,
      '--models-dir',
      modelsDir,
      '--models',
      MODELS.join(','),
    ]);
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) throw new Error(`real_clients.py printed no RESULT (exit ${code}):\n${stdout}\n${stderr.slice(-4000)}`);
    process.stdout.write(stdout.split('\nRESULT ')[0] + '\n');
    const { rows, checks } = JSON.parse(line.slice('RESULT '.length)) as {
      rows: Row[];
      checks: Array<{ name: string; pass: boolean; detail: string }>;
    };
    // 10 client × mode pairs × 3 models: a client that silently ran nothing cannot pass.
    expect(rows).toHaveLength(10 * MODELS.length);
    expect(rows.filter((r) => !r.pass)).toEqual([]);
    for (const r of rows) expect(r.maxAbsDiff).toBeLessThanOrEqual(1e-5);
    expect(checks.filter((c) => !c.pass)).toEqual([]);
    expect(checks).toHaveLength(4 + 3 * MODELS.length);
    expect(code).toBe(0);
  }, 180_000);
});
