// The bench's child-process helpers on real Node children: a ready line split across writes, a
// child that exits before it is ready or fails, a JSON result, a child stopped past its time, and a
// Python peer's script taking turns (its pause lines answered with SIGUSR2).
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitJson, readyLine, runPythonPeer, untilLine } from './peer-process.js';

const node = (script: string) => spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });

describe('untilLine', () => {
  it('finds a line written in pieces', async () => {
    const c = node(
      `process.stdout.write('warming\\nre'); setTimeout(() => { process.stdout.write('ady\\n'); setTimeout(() => {}, 200); }, 50);`,
    );
    await expect(untilLine(c, 'child', readyLine)).resolves.toBe(true);
  });

  it('returns what pick makes of the line (a JSON line)', async () => {
    const c = node(`console.log('x'); console.log(JSON.stringify({ pid: 7 }));`);
    await expect(untilLine(c, 'child', (l) => (l.startsWith('{') ? (JSON.parse(l) as { pid: number }) : undefined))).resolves.toEqual({
      pid: 7,
    });
  });

  it('a child that exits first: its exit code and stderr', async () => {
    const c = node(`console.error('no model here'); process.exit(3);`);
    await expect(untilLine(c, 'the responder', readyLine)).rejects.toThrow(
      /^the responder exited with code 3 before it was ready: no model here/,
    );
  });

  it('a child that never says it: not ready within the time', async () => {
    const c = node(`setTimeout(() => {}, 5000);`);
    try {
      await expect(untilLine(c, 'slow', readyLine, 200)).rejects.toThrow(/^slow was not ready within 0.2 s/);
    } finally {
      c.kill();
    }
  });
});

describe('exitJson', () => {
  it('the last stdout line once it exits with 0', async () => {
    await expect(exitJson(node(`console.log('progress'); console.log(JSON.stringify({ ok: 1 }));`), 'load')).resolves.toEqual({ ok: 1 });
  });

  it('a failure: the exit code and the stderr tail', async () => {
    await expect(exitJson(node(`console.error('boom'); process.exit(2);`), 'load')).rejects.toThrow(/^load failed \(exit code 2\): boom/);
  });

  it('exit 0 without a JSON line is a failure too', async () => {
    await expect(exitJson(node(`console.log('done');`), 'load')).rejects.toThrow(/^load failed \(exit code 0\)/);
  });

  it('stopped past its time', async () => {
    await expect(exitJson(node(`setTimeout(() => {}, 10000);`), 'stuck', 200)).rejects.toThrow(
      /^stuck failed \(killed by SIGTERM after 0.2 s\?\)/,
    );
  });
});

describe('runPythonPeer', () => {
  it('tells a peer script its turns and lets it on past each pause line (ray_serve_bench.py --turns)', async () => {
    // A stand-in interpreter: says `turn <i>` and waits for SIGUSR2 as the script does, then prints its arguments.
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-peer-'));
    const fake = join(dir, 'python');
    writeFileSync(
      fake,
      [
        '#!/bin/sh',
        "trap 'n=$((n+1))' USR2",
        'n=0',
        'for i in 0 1; do echo "turn $i"; sleep 10 & wait $!; done',
        'printf \'{"resumed":%s,"args":"%s"}\\n\' "$n" "$*"',
        '',
      ].join('\n'),
    );
    chmodSync(fake, 0o755);
    const paused: string[] = [];
    try {
      const r = await runPythonPeer<{ resumed: number; args: string }>(
        'ray_serve_bench.py',
        {
          python: fake,
          model: 'm.onnx',
          dims: [1, 8],
          maxBatchSize: 16,
          batchWaitMs: 0.1,
          concurrency: 4,
          durationMs: 1000,
          warmupMs: 500,
          turns: { turns: 2, turnMs: 600, turnWarmMs: 200, onPause: async (line) => void paused.push(line) },
        },
        'fake peer',
      );
      expect(paused).toEqual(['turn 0', 'turn 1']);
      expect(r.resumed).toBe(2);
      expect(r.args).toMatch(/ray_serve_bench\.py --model m\.onnx --dims 1,8 .*--turns 2 --turn-ms 600 --turn-warm-ms 200$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
