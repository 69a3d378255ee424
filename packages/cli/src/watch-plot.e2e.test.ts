// Through the built CLI against `flotilla up`: `profile --plot` writes an SVG with one point per
// batch size the stored profile measured (and chromium, where installed, renders it as SVG), and
// `status --watch` in a pipe prints a timestamped snapshot per interval and exits 0 on SIGINT.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sampleModelPath } from '@flotilla/sample-models';
import { findAll, hasClass, parseXml } from './testing/xml.js';
import { CLI_MAIN, freePort, runCli, startUp, stopUp } from './testing/run-cli.js';

const CHROMIUM = '/usr/bin/chromium';
let up: ChildProcess;
let env: NodeJS.ProcessEnv;
const dir = mkdtempSync(join(tmpdir(), 'flotilla-watch-plot-'));

beforeAll(async () => {
  if (!existsSync(CLI_MAIN)) throw new Error(`${CLI_MAIN} is missing: run pnpm build (pnpm test does)`);
  const port = await freePort();
  const r = await startUp(['--port', String(port), '--workers', '1', '--cluster', 'watchplot', '--cache-dir', join(dir, 'cache')]);
  up = r.proc;
  env = { FLOTILLA_NATS: `nats://127.0.0.1:${port}`, FLOTILLA_CLUSTER: 'watchplot' };
  const d = await runCli(['deploy', sampleModelPath('mlp'), '--name', 'mlp'], env);
  expect(d.code).toBe(0);
}, 120_000);

afterAll(() => stopUp(up));

describe('profile --plot and status --watch', () => {
  it('profile --plot writes one point per profiled batch size, the chosen one marked', async () => {
    const file = join(dir, 'mlp.svg');
    const r = await runCli(['profile', 'mlp', '--plot', file], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`plot of 1 profile written to ${file}`);
    const [profile] = JSON.parse((await runCli(['profile', 'mlp', '--json'], env)).stdout);
    const svg = parseXml(readFileSync(file, 'utf8'));
    for (const metric of ['items', 'p99']) {
      const pts = findAll(svg, (e) => hasClass(e, 'point') && e.attrs['data-metric'] === metric);
      expect(pts.map((p) => Number(p.attrs['data-batch']))).toEqual(profile.rows.map((row: { batch: number }) => row.batch));
      expect(pts.filter((p) => hasClass(p, 'chosen')).map((p) => Number(p.attrs['data-batch']))).toEqual([profile.chosen.maxBatchSize]);
    }
    if (!existsSync(CHROMIUM)) return console.log(`skipping the chromium render: ${CHROMIUM} is not installed`);
    // Chromium's XML parser is the strict one: a malformed file renders as a <parsererror> page.
    const dom = spawnSync(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--dump-dom', `file://${file}`], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(dom.stdout).toMatch(/^<svg /);
    expect(dom.stdout).not.toContain('parsererror');
  });

  it('status --watch in a pipe prints a snapshot per interval and stops cleanly on SIGINT', async () => {
    const proc = spawn(process.execPath, [CLI_MAIN, 'status', '--watch', '--interval', '200'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    while ((out.match(/^--- \d{4}-\d\d-\d\dT[\d:.]+Z ---$/gm) ?? []).length < 3) {
      if (Date.now() > deadline) throw new Error(`fewer than 3 snapshots in 30 s: ${out} ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    proc.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(err).toBe('');
    expect(out).not.toContain('\x1b');
    const stamps = [...out.matchAll(/^--- (\S+) ---$/gm)].map((m) => Date.parse(m[1]!));
    for (let i = 1; i < stamps.length; i++) expect(stamps[i]! - stamps[i - 1]!).toBeGreaterThanOrEqual(190);
    expect(out).toMatch(/^1\/1 workers alive, 1 deployment \(1 fully ready\), 1 replica, \d+ queued$/m);
    expect(out).toMatch(/^mlp +1\/1 /m);
  });
});
