// What the tests of the Python client share (python-client.test.ts, python-auth.test.ts): where
// the venv scripts/setup makes lives, whether python3 is here at all, mlp's reference outputs from
// onnxruntime-node in this process, and a pytest run over a file or folder of clients/python/tests.
import { execFile, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { sampleModelPath } from '@flotilla/sample-models';

export const ROOT = resolve(__dirname, '../../..');
/** The venv scripts/setup makes when python3 is present. */
export const PY = resolve(ROOT, '.cache/py/bin/python');
export const hasPython = spawnSync('python3', ['--version']).status === 0;

/** mlp's outputs for `x` ([rows, 16]) from onnxruntime-node in this process. */
export async function mlpReference(x: number[][]): Promise<number[][]> {
  const session = await ort.InferenceSession.create(sampleModelPath('mlp'));
  try {
    const input = new ort.Tensor('float32', Float32Array.from(x.flat()), [x.length, 16]);
    const y = (await session.run({ x: input })).y!;
    const data = Array.from(y.data as Float32Array);
    return x.map((_, i) => data.slice(i * 4, i * 4 + 4));
  } finally {
    await session.release();
  }
}

/** `pytest` over `args` (paths under the repository, options), with `env` added; never rejects. */
export function pytest(args: string[], env: Record<string, string>, timeoutMs: number): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile(
      PY,
      ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rs', '--tb=short', ...args],
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

/**
 * pytest's verdict in its `-q -rs` output: the summary line ("34 passed in 2.41s", "3 passed, 1
 * skipped in 0.5s") and the short-summary lines of tests that did not pass (SKIPPED, FAILED,
 * ERROR). What the interpreter prints as it exits (asyncio's "Task was destroyed but it is
 * pending!" for a library's leftover task, unraisable-exception warnings) is not part of it.
 */
export function pytestVerdict(output: string): { summary: string | undefined; notPassed: string[] } {
  const lines = output.split('\n').map((l) => l.trim());
  const summary = lines.filter((l) => /^(=+ )?\d+ (passed|failed|skipped|errors?)\b.* in [\d.]+s\b/.test(l)).pop();
  return { summary: summary?.replace(/^=+ | =+$/g, ''), notPassed: lines.filter((l) => /^(SKIPPED|FAILED|ERROR)\b/.test(l)) };
}
