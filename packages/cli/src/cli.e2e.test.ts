// End to end through the CLI binary: `up` (own nats-server, head, worker processes), `deploy`,
// `infer --json`, `status --json`, `ls --json`, `describe`, error exit codes, `undeploy`.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NatsServer } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { CLI_MAIN, freePort, runCli, startUp, stopUp } from './testing/run-cli.js';

const MAIN = CLI_MAIN;

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, env);

let up: ChildProcess;
let port: number;
let env: NodeJS.ProcessEnv;
const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-'));

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run pnpm build (pnpm test does)`);
  port = await freePort();
  const r = await startUp(['--port', String(port), '--workers', '2', '--cluster', 'e2e', '--cache-dir', join(dir, 'cache')]);
  up = r.proc;
  expect(r.line).toContain(`nats=nats://127.0.0.1:${port}`);
  env = { FLOTILLA_NATS: `nats://127.0.0.1:${port}`, FLOTILLA_CLUSTER: 'e2e' };
}, 90_000);

afterAll(() => stopUp(up));

describe('flotilla CLI', () => {
  it('deploys, infers with --json and writes --output', async () => {
    const d = await cli(['deploy', sampleModelPath('mlp'), '--name', 'mlp', '--replicas', '2', '--json'], env);
    expect(d.stderr).toBe('');
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ spec: { name: 'mlp', replicas: 2 }, ready: 2 });

    const input = join(dir, 'in.json');
    writeFileSync(input, JSON.stringify({ x: { dtype: 'float32', dims: [1, 16], data: Array.from({ length: 16 }, (_, i) => i / 16) } }));
    const out = join(dir, 'out.json');
    const r = await cli(['infer', 'mlp', '--input', input, '--output', out, '--json'], env);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.outputs.y.dims).toEqual([1, 4]);
    expect(j.outputs.y.data).toHaveLength(4);
    expect(j.latencyMs).toBeGreaterThan(0);
    const file = JSON.parse(readFileSync(out, 'utf8'));
    expect(file.y.data).toEqual(j.outputs.y.data);
  });

  it('status --json shows worker processes with pids, devices and the deployment; ls --json lists it', async () => {
    const s = await cli(['status', '--json'], env);
    expect(s.code).toBe(0);
    const st = JSON.parse(s.stdout);
    expect(st.workers).toHaveLength(2);
    for (const w of st.workers) {
      expect(w.pid).not.toBe(process.pid);
      expect(w.pid).toBeGreaterThan(0);
      expect(w.devices[0]).toMatchObject({ id: 'cpu', kind: 'cpu' });
    }
    expect(new Set(st.workers.map((w: { pid: number }) => w.pid)).size).toBe(2);
    expect(st.deployments.map((d: { spec: { name: string } }) => d.spec.name)).toEqual(['mlp']);
    const ls = JSON.parse((await cli(['ls', '--json'], env)).stdout);
    expect(ls[0]).toMatchObject({ spec: { name: 'mlp' }, ready: 2 });
    const human = await cli(['status'], env);
    expect(human.stdout).toContain('worker-0');
  });

  it('describe shows the spec, the replicas and the signature with symbolic dims; --json carries the signature', async () => {
    const h = await cli(['describe', 'mlp'], env);
    expect(h.stderr).toBe('');
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^model {4}mlp$/m);
    expect(h.stdout).toMatch(/^replicas 2\/2 ready$/m);
    expect(h.stdout).toMatch(/^input +x +float32 +\[N, 16\]$/m);
    expect(h.stdout).toMatch(/^output +y +float32 +\[N, 4\]$/m);
    const j = await cli(['describe', 'mlp', '--json'], env);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({
      spec: { name: 'mlp' },
      ready: 2,
      signature: {
        inputs: [{ name: 'x', dtype: 'float32', shape: ['N', 16] }],
        outputs: [{ name: 'y', dtype: 'float32', shape: ['N', 4] }],
        batchAxis: true,
      },
    });
    const unknown = await cli(['describe', 'nope', '--json'], env);
    expect(unknown.code).toBe(3);
    expect(JSON.parse(unknown.stdout).error.code).toBe('UNKNOWN_MODEL');
  });

  it('profile shows the batch sweep and the thread settings measured; deploy takes thread settings and batch padding', async () => {
    const p = await cli(['profile', 'mlp'], env);
    expect(p.code).toBe(0);
    expect(p.stdout).toMatch(/BATCH +RUNS +P50 MS/);
    expect(p.stdout).toMatch(/INTRA-OP +INTER-OP +MODE/);
    expect(p.stdout).toMatch(/chosen threads: \d+ intra-op/);
    const d = await cli(['deploy', sampleModelPath('mlp'), '--name', 'mlp1t', '--intra-op-threads', '1', '--json'], env);
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ spec: { threads: { intraOp: 1, interOp: 1, mode: 'sequential' } }, ready: 1 });
    const bad = await cli(['deploy', sampleModelPath('mlp'), '--name', 'x', '--inter-op-threads', '2'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/BAD_REQUEST.*--inter-op-threads needs --intra-op-threads/);
    expect((await cli(['undeploy', 'mlp1t'], env)).code).toBe(0);
    const padded = await cli(
      ['deploy', sampleModelPath('mlp'), '--name', 'mlppad', '--max-batch-size', '4', '--pad-batches', '--json'],
      env,
    );
    expect(padded.code).toBe(0);
    expect(JSON.parse(padded.stdout)).toMatchObject({ spec: { batching: { maxBatchSize: 4, padBatches: true } }, ready: 1 });
    const unpadded = await cli(['deploy', sampleModelPath('mlp'), '--name', 'mlpnopad', '--no-pad-batches', '--json'], env);
    expect(JSON.parse(unpadded.stdout)).toMatchObject({ spec: { batching: { padBatches: false } } });
    for (const n of ['mlppad', 'mlpnopad']) expect((await cli(['undeploy', n], env)).code).toBe(0);
  });

  it("deploy --session-host puts the replica's session on a thread of its own; status says so", async () => {
    const d = await cli(
      ['deploy', sampleModelPath('mlp'), '--name', 'mlpthread', '--session-host', 'thread', '--no-profile', '--json'],
      env,
    );
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ spec: { sessionHost: 'thread' }, ready: 1 });
    const st = JSON.parse((await cli(['status', '--json'], env)).stdout);
    const replica = st.workers.flatMap((w: { replicas: object[] }) => w.replicas).find((r: { model: string }) => r.model === 'mlpthread');
    expect(replica).toMatchObject({ state: 'ready', sessionHost: 'thread' });
    expect((await cli(['status'], env)).stdout).toMatch(/^mlpthread-\S+ +mlpthread +\S+ +cpu thread +ready /m);
    const input = join(dir, 'thread-in.json');
    writeFileSync(input, JSON.stringify({ x: { dtype: 'float32', dims: [1, 16], data: Array.from({ length: 16 }, (_, i) => i / 16) } }));
    const inf = await cli(['infer', 'mlpthread', '--input', input, '--json'], env);
    expect(inf.code).toBe(0);
    expect(JSON.parse(inf.stdout).outputs.y.dims).toEqual([1, 4]);
    const bad = await cli(['deploy', sampleModelPath('mlp'), '--name', 'x', '--session-host', 'gpu'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("invalid session host 'gpu'");
    expect((await cli(['undeploy', 'mlpthread'], env)).code).toBe(0);
  });

  it('fails with the error code and a non-zero exit code', async () => {
    const input = join(dir, 'bad.json');
    writeFileSync(input, JSON.stringify({ x: { dtype: 'float32', dims: [1, 3], data: [1, 2, 3] } }));
    const unknown = await cli(['infer', 'nope', '--input', input, '--json'], env);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('UNKNOWN_MODEL');
    expect(JSON.parse(unknown.stdout).error.code).toBe('UNKNOWN_MODEL');
    const mismatch = await cli(['infer', 'mlp', '--input', input], env);
    expect(mismatch.code).toBe(4);
    expect(mismatch.stderr).toContain('INPUT_MISMATCH');
    const missing = await cli(['infer', 'mlp', '--input', join(dir, 'nope.json')], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('BAD_REQUEST');
    const noHead = await cli(['ls'], { ...env, FLOTILLA_CLUSTER: 'nobody-here' });
    expect(noHead.code).toBe(5);
    expect(noHead.stderr).toContain('UNAVAILABLE');
  });

  it('up refuses a port that is taken, with a clear message', async () => {
    const r = await cli(['up', '--port', String(port)]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already in use/);
  });

  it('undeploys', async () => {
    expect((await cli(['undeploy', 'mlp'], env)).code).toBe(0);
    expect(JSON.parse((await cli(['ls', '--json'], env)).stdout)).toEqual([]);
  });
});

/** Ctrl-C to an `up`: its exit code once it has stopped. */
function interrupt(proc: ChildProcess): Promise<unknown> {
  const exited = new Promise((res) => proc.once('exit', res));
  proc.kill('SIGINT');
  return exited;
}

describe('flotilla up --nats', () => {
  it('joins an existing NATS instead of starting one', async () => {
    const nats = await NatsServer.start();
    try {
      const r = await startUp(['--nats', nats.url, '--cluster', 'joined', '--workers', '1', '--cache-dir', join(dir, 'cache2')]);
      expect(r.line).toContain(`nats=${nats.url}`);
      const s = await cli(['status', '--json', '--nats', nats.url, '--cluster', 'joined']);
      expect(JSON.parse(s.stdout).workers).toHaveLength(1);
      expect(await interrupt(r.proc)).toBe(0);
    } finally {
      await nats.stop();
    }
  }, 60_000);
});

describe('flotilla up --gpu-share', () => {
  it('passes the share to its workers: each charges its replicas against that part of the GPU', async () => {
    const nats = await NatsServer.start();
    const inventory = join(dir, 'gpu.json');
    const GiB = 2 ** 30;
    writeFileSync(
      inventory,
      JSON.stringify({ gpus: [{ index: 0, vendor: 'NVIDIA', model: 'stand-in', vramTotalBytes: 8 * GiB, vramFreeBytes: 8 * GiB }] }),
    );
    try {
      const args = ['--nats', nats.url, '--cluster', 'shared', '--workers', '2', '--cache-dir', join(dir, 'cache3')];
      // Written as the Kubernetes overlay writes it (1/N for N workers per GPU).
      const r = await startUp([...args, '--inventory', inventory, '--gpu-share', '1/2', '--headroom', '0']);
      const st = JSON.parse((await cli(['status', '--json', '--nats', nats.url, '--cluster', 'shared'])).stdout);
      expect(st.workers).toHaveLength(2);
      for (const w of st.workers) {
        const gpu = w.devices.find((d: { id: string }) => d.id === 'gpu:0');
        expect(gpu).toMatchObject({ kind: 'gpu', capacityBytes: 4 * GiB, budgetBytes: 4 * GiB });
      }
      expect(await interrupt(r.proc)).toBe(0);
    } finally {
      await nats.stop();
    }
  }, 60_000);

  it('refuses a session host it does not know, before connecting anywhere', async () => {
    const r = await cli(['worker', '--session-host', 'fast', '--nats', 'nats://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("invalid session host 'fast'");
  });

  it('refuses a share outside (0, 1] with the usage, before connecting anywhere', async () => {
    const r = await cli(['worker', '--gpu-share', '3/2', '--nats', 'nats://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("invalid share '3/2'");
  });
});
