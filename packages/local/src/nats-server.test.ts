// A nats-server (or a worker of `flotilla up`) started by a process that then dies (an uncaught
// exception, a write to a closed pipe) must not outlive it: it would hold its port, or retry a
// server that is gone, until someone kills it by hand.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js');

/** Whether `pid` runs: a killed process its new parent has not reaped yet (a zombie) does not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (!existsSync('/proc')) return true;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const startServer = `const { NatsServer } = await import(DIST);
const pid = (await NatsServer.start()).pid;`;
// What `flotilla up` does with its worker processes.
const startChild = `const { killOnExit } = await import(DIST);
const { spawn } = await import('node:child_process');
const child = spawn('sleep', ['600'], { stdio: 'ignore' });
killOnExit(child);
const pid = child.pid;`;

it.each([
  ['a nats-server', 'throws an uncaught exception', startServer, `throw new Error('boom');`],
  ['a nats-server', 'calls process.exit', startServer, `process.exit(3);`],
  ['a child given to killOnExit', 'throws an uncaught exception', startChild, `throw new Error('boom');`],
])('%s dies with the process that started it when that process %s', async (_what, _how, start, ending) => {
  const script = `const DIST = ${JSON.stringify(dist)};
${start}
process.stdout.write(String(pid) + '\\n', () => { ${ending} });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const pid = Number(out.trim());
  expect(pid).toBeGreaterThan(0);
  expect(code).not.toBe(0);
  try {
    // SIGKILL is sent as the process exits; the child is gone a moment later.
    const until = Date.now() + 2000;
    while (alive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(alive(pid)).toBe(false);
  } finally {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});
