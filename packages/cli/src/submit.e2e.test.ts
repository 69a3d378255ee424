// End to end: `flotilla submit` and `flotilla job status|resume` (the built CLI) against a cluster
// started in this process, including a submit killed with SIGKILL and finished by `job resume`.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FlotillaClient } from '@flotilla/client';
import { jobStatus } from '@flotilla/jobs';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { CLI_MAIN, runCli } from './testing/run-cli.js';

const MAIN = CLI_MAIN;

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { FLOTILLA_CACHE_DIR: cacheDir, ...env }, 60_000);

let cluster: LocalCluster;
let client: FlotillaClient;
let conn: string[];
const dir = mkdtempSync(join(tmpdir(), 'flotilla-submit-'));
/** The CLI keeps local job records under $FLOTILLA_CACHE_DIR/jobs: this test's own. */
const cacheDir = join(dir, 'cache');

function writeInput(name: string, n: number, bad: number[] = []): string {
  const path = join(dir, name);
  const line = (i: number) => {
    const cols = bad.includes(i) ? 4 : 16;
    return JSON.stringify({ x: { dtype: 'float32', dims: [1, cols], data: Array.from({ length: cols }, (_, k) => ((i + k) % 10) / 10) } });
  };
  writeFileSync(path, Array.from({ length: n }, (_, i) => line(i)).join('\n') + '\n');
  return path;
}

type OutLine = { line: number; outputs?: { y: { dims: number[]; data: number[] } }; error?: { code: string } };
const readOutput = (path: string): OutLine[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as OutLine);
const jobIdIn = (stderr: string) => /job ([A-Za-z0-9]+):/.exec(stderr)?.[1];

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run pnpm build (pnpm test does)`);
  cluster = await LocalCluster.start({ workers: 1 });
  client = cluster.client();
  await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
  // The same model, slowed down: a lone request waits 100 ms for company before its batch runs,
  // so a submit with --concurrency 1 takes long enough to be killed halfway.
  await client.deploy(sampleModelPath('mlp'), 'slow', { device: 'cpu', batching: { maxBatchSize: 64, maxQueueDelayMs: 100 } });
  conn = ['--nats', cluster.url, '--cluster', cluster.cluster];
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('flotilla submit', () => {
  it('--json runs the job, writes the output in order with the failed lines coded, and job status --json agrees', async () => {
    const input = writeInput('in.jsonl', 40, [3, 25]);
    const output = join(dir, 'out.jsonl');
    const r = await cli(['submit', 'mlp', '--input', input, '--output', output, '--concurrency', '8', '--json', ...conn]);
    expect(r.code).toBe(0);
    const id = jobIdIn(r.stderr);
    expect(id).toBeDefined();
    expect(r.stderr).not.toMatch(/█|░/); // no progress bar with --json (and no TTY)
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({
      id,
      model: 'mlp',
      input,
      output,
      total: 40,
      ok: 38,
      failed: 2,
      remaining: 0,
      complete: true,
      errored: { INPUT_MISMATCH: 2 },
    });

    const out = readOutput(output);
    expect(out.map((o) => o.line)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(out.filter((o) => o.error).map((o) => [o.line, o.error!.code])).toEqual([
      [3, 'INPUT_MISMATCH'],
      [25, 'INPUT_MISMATCH'],
    ]);
    expect(out[0]!.outputs!.y.dims).toEqual([1, 4]);

    const st = await cli(['job', 'status', id!, '--json', ...conn]);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({
      id,
      total: 40,
      done: 40,
      ok: 38,
      failed: 2,
      remaining: 0,
      state: 'complete',
      errored: { INPUT_MISMATCH: 2 },
    });
    const human = await cli(['job', 'status', id!, ...conn]);
    expect(human.stdout).toContain('remaining 0');
    expect(human.stdout).toContain('INPUT_MISMATCH 2');
  });

  it('prints a human summary; errors exit with their code', async () => {
    const input = writeInput('in-human.jsonl', 5);
    const output = join(dir, 'out-human.jsonl');
    const r = await cli(['submit', 'mlp', '--input', input, '--output', output, ...conn]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('complete: 5 lines, 5 ok, 0 failed');
    expect(r.stdout).toContain(`wrote ${output}`);
    expect(readOutput(output)).toHaveLength(5);

    const unknown = await cli(['submit', 'nope', '--input', input, '--output', output, '--json', ...conn]);
    expect(unknown.code).toBe(3);
    expect(JSON.parse(unknown.stdout).error.code).toBe('UNKNOWN_MODEL');
    const missing = await cli(['submit', 'mlp', '--input', join(dir, 'missing.jsonl'), '--output', output, ...conn]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('BAD_REQUEST');
    const noJob = await cli(['job', 'status', 'nope', '--json', ...conn]);
    expect(noJob.code).toBe(1);
    expect(JSON.parse(noJob.stdout).error.code).toBe('NOT_FOUND');
  });

  it('survives SIGKILL of the submit: job resume sends only the remaining lines and writes the whole output', async () => {
    const total = 100;
    const input = writeInput('in-crash.jsonl', total);
    const output = join(dir, 'out-crash.jsonl');
    const proc = spawn(
      process.execPath,
      [MAIN, 'submit', 'slow', '--input', input, '--output', output, '--concurrency', '1', '--json', ...conn],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, FLOTILLA_CACHE_DIR: cacheDir },
      },
    );
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const t0 = Date.now();
      while (!jobIdIn(stderr)) {
        if (Date.now() - t0 > 20_000) throw new Error(`no job id on stderr: ${stderr}`);
        await sleep(20);
      }
      const id = jobIdIn(stderr)!;
      while ((await jobStatus(client, id)).done < 5) {
        if (Date.now() - t0 > 30_000) throw new Error('the job did not progress');
        await sleep(50);
      }
      proc.kill('SIGKILL');
      expect(await exited).toBeNull(); // killed, not finished
      await sleep(200); // a result published just before the kill is stored by now
      const mid = await jobStatus(client, id);
      expect(mid.state).toBe('incomplete');
      expect(mid.done).toBeGreaterThanOrEqual(5);
      expect(existsSync(output)).toBe(false);
      // The submit kept the job's files on this machine; the cluster's record is not trusted for them.
      const local = JSON.parse(readFileSync(join(cacheDir, 'jobs', cluster.cluster, `${id}.json`), 'utf8'));
      expect(local).toMatchObject({ id, input, output, total });

      // From a machine without that record, resume needs the files named.
      const elsewhere = await cli(['job', 'resume', id, '--json', ...conn], { FLOTILLA_CACHE_DIR: join(dir, 'other-cache') });
      expect(elsewhere.code).toBe(2);
      expect(JSON.parse(elsewhere.stdout).error).toMatchObject({
        code: 'BAD_REQUEST',
        message: expect.stringContaining('give the input file'),
      });

      const r = await cli(['job', 'resume', id, '--concurrency', '32', '--json', ...conn]);
      expect(r.code).toBe(0);
      expect(jobIdIn(r.stderr)).toBe(id);
      const s = JSON.parse(r.stdout);
      expect(s).toMatchObject({ id, total, ok: total, failed: 0, remaining: 0, complete: true });
      expect(s.sent).toBe(total - mid.done); // nothing recorded before the kill was sent again
      expect(readOutput(output).map((o) => o.line)).toEqual(Array.from({ length: total }, (_, i) => i));
      const st = JSON.parse((await cli(['job', 'status', id, '--json', ...conn])).stdout);
      expect(st).toMatchObject({ done: total, remaining: 0, state: 'complete' });

      // --output writes the finished job elsewhere (and only there), here from another machine.
      const copy = join(dir, 'out-crash-copy.jsonl');
      const again = await cli(['job', 'resume', id, '--input', input, '--output', copy, '--json', ...conn], {
        FLOTILLA_CACHE_DIR: join(dir, 'other-cache'),
      });
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ complete: true, sent: 0, output: copy });
      expect(readOutput(copy)).toEqual(readOutput(output));
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
  }, 90_000);
});
