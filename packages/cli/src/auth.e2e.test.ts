// End to end through the CLI binary: `auth init` writes the seeds and the config, `up --auth` runs
// a cluster that enforces them, and the networked commands act with the role of their `--nkey`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sampleModelPath } from '@flotilla/sample-models';
import { ROLES } from '@flotilla/protocol';
import { CLI_MAIN, freePort, runCli, stopUp } from './testing/run-cli.js';

const CLUSTER = 'authe2e';
const dir = mkdtempSync(join(tmpdir(), 'flotilla-auth-e2e-'));
const auth = join(dir, 'auth');
let up: ChildProcess | undefined;
let upOut = '';
let env: NodeJS.ProcessEnv;
const nk = (role: string) => join(auth, `${role}.nk`);

/** `flotilla up ARGS` until its ready line (all its output so far kept in upOut). */
function startUp(args: string[], timeoutMs = 60_000): Promise<void> {
  const proc = spawn(process.execPath, [CLI_MAIN, 'up', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  up = proc;
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`up not ready in ${timeoutMs} ms: ${upOut}`)), timeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      upOut += d.toString();
      if (upOut.includes('flotilla up: ready')) {
        clearTimeout(t);
        res();
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (upOut += d.toString()));
    proc.on('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`up exited with ${code}: ${upOut}`));
    });
  });
}

afterAll(async () => {
  await stopUp(up);
  rmSync(dir, { recursive: true, force: true });
});

describe('flotilla auth init', () => {
  it('writes one 0600 seed per role, their public keys and nats.conf', async () => {
    const r = await runCli(['auth', 'init', '--out', auth, '--cluster', CLUSTER]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const role of ROLES) {
      expect(statSync(nk(role)).mode & 0o777).toBe(0o600);
      const text = readFileSync(nk(role), 'utf8');
      expect(text).toContain(`# flotilla-role: ${role}`);
      expect(text).toMatch(/^SU[A-Z2-7]{56}$/m);
      const pub = readFileSync(join(auth, `${role}.pub`), 'utf8').trim();
      expect(pub).toMatch(/^U[A-Z2-7]{55}$/);
      expect(r.stdout).toContain(pub);
    }
    expect(readFileSync(join(auth, 'nats.conf'), 'utf8')).toContain(`flotilla.${CLUSTER}.ctl.deploy`);
  });

  it('refuses to overwrite seeds unless --force', async () => {
    const before = readFileSync(nk('head'), 'utf8');
    const again = await runCli(['auth', 'init', '--out', auth, '--cluster', CLUSTER]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/BAD_REQUEST.*already exist.*--force/);
    expect(readFileSync(nk('head'), 'utf8')).toBe(before);
    const forced = await runCli(['auth', 'init', '--out', auth, '--cluster', CLUSTER, '--force']);
    expect(forced.code).toBe(0);
    expect(readFileSync(nk('head'), 'utf8')).not.toBe(before);
    expect(statSync(nk('head')).mode & 0o777).toBe(0o600);
  });
});

describe('flotilla up --auth', () => {
  it('refuses a config made for another cluster before starting anything', async () => {
    const r = await runCli(['up', '--auth', auth, '--cluster', 'other', '--port', String(await freePort())]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/for cluster 'authe2e', not 'other'/);
  });

  it('runs a cluster where each --nkey acts with its role', async () => {
    const port = await freePort();
    await startUp(['--auth', auth, '--port', String(port), '--cluster', CLUSTER, '--workers', '1', '--cache-dir', join(dir, 'cache')]);
    expect(upOut).toContain(`--nkey ${nk('operator')}`);
    expect(upOut).toContain(`--nkey ${nk('caller')}`);
    env = { FLOTILLA_NATS: `nats://127.0.0.1:${port}`, FLOTILLA_CLUSTER: CLUSTER };

    const deployed = await runCli(['deploy', sampleModelPath('mlp'), '--name', 'mlp', '--nkey', nk('operator'), '--json'], env);
    expect(deployed.stderr).toBe('');
    expect(JSON.parse(deployed.stdout)).toMatchObject({ spec: { name: 'mlp' }, ready: 1 });

    const input = join(dir, 'in.json');
    writeFileSync(input, JSON.stringify({ x: { dtype: 'float32', dims: [1, 16], data: Array.from({ length: 16 }, (_, i) => i / 16) } }));
    const inferred = await runCli(['infer', 'mlp', '--input', input, '--json', '--nkey', nk('caller')], env);
    expect(inferred.code).toBe(0);
    expect(JSON.parse(inferred.stdout).outputs.y.dims).toEqual([1, 4]);

    // The seed file may come from the environment too (how the k8s manifests pass it).
    const listed = await runCli(['ls', '--json'], { ...env, FLOTILLA_NATS_NKEY: nk('caller') });
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)[0]).toMatchObject({ spec: { name: 'mlp' } });

    for (const [args, role] of [
      [['deploy', sampleModelPath('affine'), '--name', 'aff'], 'caller'],
      [['scale', 'mlp', '2'], 'caller'],
      [['undeploy', 'mlp'], 'caller'],
      [['ls'], 'worker'],
      [['infer', 'mlp', '--input', input], 'head'],
    ] as const) {
      const start = Date.now();
      const r = await runCli([...args, '--nkey', nk(role)], env);
      expect([args[0], role, r.code, r.stderr.split('\n')[0]]).toEqual([args[0], role, 12, expect.stringMatching(/^error FORBIDDEN: /)]);
      expect(Date.now() - start).toBeLessThan(10_000); // a refusal, not a timeout (the CLI's start included)
    }

    const anonymous = await runCli(['status'], env);
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/auth/i);

    const status = await runCli(['status', '--json', '--nkey', nk('caller')], env);
    expect(JSON.parse(status.stdout).deployments.map((d: { spec: { name: string } }) => d.spec.name)).toEqual(['mlp']);
    expect(existsSync(CLI_MAIN)).toBe(true);
  }, 90_000);
});
