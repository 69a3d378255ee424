// End to end through the CLI: `flotilla dashboard` and `flotilla gateway --dashboard` against
// `flotilla up`: the page, the snapshot (the cluster's worker) and the live stream are served, and
// each process stops promptly on SIGINT even with a stream open.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { get, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_MAIN, freePort, runCli, startUp, stopUp } from './testing/run-cli.js';

let up: ChildProcess | undefined;
let nats = '';

beforeAll(async () => {
  const port = await freePort();
  up = (await startUp(['--port', String(port), '--workers', '1', '--cluster', 'dash'])).proc;
  nats = `nats://127.0.0.1:${port}`;
}, 90_000);

afterAll(() => stopUp(up));

/** Starts a long-running CLI command and resolves with it and the first stdout line matching `re`. */
function start(
  args: string[],
  re: RegExp,
  connect = ['--nats', nats, '--cluster', 'dash'],
): Promise<{ proc: ChildProcess; match: RegExpMatchArray }> {
  const proc = spawn(process.execPath, [CLI_MAIN, ...args, ...connect], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no ${re} in 30 s: ${out} ${err}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = out.match(re);
      if (m) {
        clearTimeout(t);
        res({ proc, match: m });
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.on('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`exited with ${code}: ${out} ${err}`));
    });
  });
}

/** Opens the SSE stream and resolves with the first snapshot (the response stays open). */
function firstSnapshot(url: string): Promise<{ res: IncomingMessage; snapshot: any }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let buf = '';
      res.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = buf.match(/event: snapshot\ndata: (.*)\n\n/);
        if (m) resolve({ res, snapshot: JSON.parse(m[1]!) });
      });
      res.on('error', () => undefined);
    }).on('error', reject);
  });
}

async function interruptAndWait(proc: ChildProcess): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  proc.kill('SIGINT');
  return { code: await exited, ms: Date.now() - t0 };
}

it('flotilla dashboard serves the page, the snapshot and the live stream, and stops on SIGINT with a stream open', async () => {
  const { proc, match } = await start(['dashboard', '--http-port', '0'], /open (http:\/\/\S+\/) /);
  const url = match[1]!;
  const page = await fetch(url);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('<div id="app">');
  const snap = await (await fetch(`${url}api/snapshot`)).json();
  expect(snap).toMatchObject({ cluster: 'dash', allowActions: false });
  expect(snap.workers).toHaveLength(1);
  const scale = await fetch(`${url}api/models/m/scale`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"replicas":1}',
  });
  expect([scale.status, (await scale.json()).error.code]).toEqual([403, 'FORBIDDEN']);

  const { res, snapshot } = await firstSnapshot(`${url}api/stream`);
  expect(snapshot.workers).toHaveLength(1);
  const { code, ms } = await interruptAndWait(proc);
  res.destroy();
  expect(code).toBe(0);
  expect(ms).toBeLessThan(5000);
});

it('flotilla gateway --dashboard mounts it at /dashboard/ next to the KServe API', async () => {
  const { proc, match } = await start(
    ['gateway', '--http-port', '0', '--host', '127.0.0.1', '--dashboard'],
    /dashboard=(http:\/\/\S+\/dashboard\/)/,
  );
  const url = match[1]!;
  const base = url.replace(/dashboard\/$/, '');
  expect((await fetch(`${base}v2/health/live`)).status).toBe(200);
  const bare = await fetch(`${base}dashboard`, { redirect: 'manual' });
  expect([bare.status, bare.headers.get('location')]).toEqual([302, '/dashboard/']);
  expect((await fetch(url)).status).toBe(200);
  expect((await (await fetch(`${url}api/snapshot`)).json()).workers).toHaveLength(1);
  const { res } = await firstSnapshot(`${url}api/stream`);
  const { code, ms } = await interruptAndWait(proc);
  res.destroy();
  expect(code).toBe(0);
  expect(ms).toBeLessThan(5000);
});

it("with a caller's nkey the page reads the cluster, and actions, even with --allow-actions, are FORBIDDEN", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-dash-auth-'));
  let secured: ChildProcess | undefined;
  let dash: ChildProcess | undefined;
  try {
    expect((await runCli(['auth', 'init', '--out', dir, '--cluster', 'dashauth'])).code).toBe(0);
    const port = await freePort();
    secured = (await startUp(['--port', String(port), '--workers', '1', '--cluster', 'dashauth', '--auth', dir])).proc;
    const connect = ['--nats', `nats://127.0.0.1:${port}`, '--cluster', 'dashauth', '--nkey', join(dir, 'caller.nk')];
    const started = await start(['dashboard', '--http-port', '0', '--allow-actions'], /open (http:\/\/\S+\/) /, connect);
    dash = started.proc;
    const url = started.match[1]!;
    const snap = await (await fetch(`${url}api/snapshot`)).json();
    expect(snap).toMatchObject({ cluster: 'dashauth', allowActions: true });
    expect(snap.error).toBeUndefined();
    expect(snap.workers).toHaveLength(1);
    for (const action of ['scale', 'undeploy']) {
      const res = await fetch(`${url}api/models/m/${action}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"replicas":1}',
      });
      expect([action, res.status, (await res.json()).error.code]).toEqual([action, 403, 'FORBIDDEN']);
    }
  } finally {
    if (dash) await interruptAndWait(dash);
    await stopUp(secured);
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);
