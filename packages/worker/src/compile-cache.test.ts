// Real onnxruntime sessions: the compile cache saves the optimised graph once and reuses it with
// identical outputs; and creating/releasing sessions many times does not leak memory.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { compiledPath, createCompiledSession } from './compile-cache.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-compile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(s: ort.InferenceSession, x: Float32Array): Promise<Float32Array> {
  const out = await s.run({ x: new ort.Tensor('float32', x, [2, 1024]) });
  return out.y!.data as Float32Array;
}

it('compiles once (miss), then opens the cached optimised graph (hit) with identical outputs', async () => {
  const model = sampleModelPath('wide-mlp');
  const cache = { path: compiledPath(dir, 'abc', 'cpu', 'cpu-test-2c-t1', '1.30.0') };
  const opts = { executionProviders: ['cpu'], intraOpNumThreads: 1 };
  const plain = await createCompiledSession(model, opts, undefined);
  const miss = await createCompiledSession(model, opts, cache);
  expect(miss.compile).toBe('miss');
  expect(existsSync(cache.path)).toBe(true);
  const hit = await createCompiledSession(model, opts, cache);
  expect(hit.compile).toBe('hit');
  expect(plain.compile).toBe('off');
  const x = randomFloats(2048, 3);
  const [a, b, c] = await Promise.all([run(plain.session, x), run(miss.session, x), run(hit.session, x)]);
  expect(Array.from(b)).toEqual(Array.from(a));
  expect(Array.from(c)).toEqual(Array.from(a));
  await Promise.all([plain.session.release(), miss.session.release(), hit.session.release()]);
});

it('an unreadable cached file is rebuilt, not fatal', async () => {
  const cache = { path: compiledPath(dir, 'bad', 'cpu', 'x', 'y') };
  writeFileSync(cache.path, 'not a model');
  const s = await createCompiledSession(sampleModelPath('mlp'), { executionProviders: ['cpu'] }, cache);
  expect(s.compile).toBe('miss');
  await s.session.release();
});

it('memory comes back: 40 create/release cycles of a 32 MiB model do not grow RSS', async () => {
  const model = sampleModelPath('wide-mlp');
  const cycle = async () => {
    const s = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
    await run(s, randomFloats(2048, 1));
    await s.release();
  };
  for (let i = 0; i < 5; i++) await cycle(); // warm-up: allocator arenas settle
  const gc = () => (globalThis as { gc?: () => void }).gc?.();
  const rss: number[] = [];
  for (let i = 0; i < 40; i++) {
    await cycle();
    gc();
    rss.push(process.memoryUsage().rss);
  }
  // A trend, not one reading: RSS steps up and down by 16-80 MiB as the allocator keeps or returns
  // freed arenas, while a leak of the weights grows ~32 MiB every cycle. The lowest reading of
  // cycles 31-40 over the highest of cycles 6-15: a leak puts it near 500 MiB, the steps below 0-80.
  const growth = Math.min(...rss.slice(30)) - Math.max(...rss.slice(5, 15));
  process.stdout.write(`session create/release ×40 (32 MiB weights): RSS growth ${(growth / 1048576).toFixed(1)} MiB\n`);
  expect(growth).toBeLessThan(192 * 1024 * 1024);
}, 120_000);
