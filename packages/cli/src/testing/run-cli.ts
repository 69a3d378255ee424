// Test helper: runs the built `flotilla` CLI and collects its exit code and output.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

/** The built CLI entry (tests need `pnpm build` first; `pnpm test` does it). */
export const CLI_MAIN = resolve(__dirname, '../../dist/main.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<CliResult> {
  try {
    const r = await promisify(execFile)(process.execPath, [CLI_MAIN, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

/** Starts `flotilla up ARGS` and resolves with its "ready" line; rejects if it exits first. */
export function startUp(args: string[], timeoutMs = 60_000): Promise<{ proc: ChildProcess; line: string }> {
  const proc = spawn(process.execPath, [CLI_MAIN, 'up', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`up not ready in ${timeoutMs} ms: ${out} ${err}`)), timeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('flotilla up: ready'));
      if (line) {
        clearTimeout(t);
        res({ proc, line });
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.on('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`up exited with ${code}: ${out} ${err}`));
    });
  });
}

/** SIGTERMs an `up` started by startUp and waits for it to exit. */
export async function stopUp(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
}
