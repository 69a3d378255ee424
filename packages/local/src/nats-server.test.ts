// A nats-server started by a process that then dies (an uncaught exception, a write to a closed
// pipe) must not outlive it: it would hold its port and its CPU until someone kills it by hand.
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

it.each([
  ['throws an uncaught exception', `throw new Error('boom');`],
  ['calls process.exit', `process.exit(3);`],
])('a nats-server dies with the process that started it when that process %s', async (_how, ending) => {
  const script = `import { NatsServer } from ${JSON.stringify(dist)};
const s = await NatsServer.start();
process.stdout.write(String(s.pid) + '\\n', () => { ${ending} });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const pid = Number(out.trim());
  expect(pid).toBeGreaterThan(0);
  expect(code).not.toBe(0);
  try {
    // SIGKILL is sent as the process exits; the server is gone a moment later.
    const until = Date.now() + 2000;
    while (alive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(alive(pid)).toBe(false);
  } finally {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});
