#!/usr/bin/env node
// What a session.run costs after a gap of other work, against one right after another run: the
// gap is a busy wait of 0 to 5 ms (the run then follows work, as a replica's runs follow reading
// and answering requests). Median run per gap, 3 × 100 runs each. On AVX-512 cores a run after a
// gap of 0.5 ms or more was 0.3–0.4 ms slower here (profiler.ts RESUME_PAUSE_MS). Run it pinned:
//   taskset -c 1 node scripts/resume-cost.mjs [MODEL=.cache/sample-models/conv-classifier.onnx] [BATCH=2]
import { createRequire } from 'node:module';
import process from 'node:process';
import { URL } from 'node:url';
import { performance } from 'node:perf_hooks';

const require = createRequire(new URL('../packages/worker/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const model = process.argv[2] ?? new URL('../.cache/sample-models/conv-classifier.onnx', import.meta.url).pathname;
const batch = Number(process.argv[3] ?? 2);
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});
const feeds = {};
for (const m of session.inputMetadata) {
  const dims = m.shape.map((d, i) => (typeof d === 'number' ? d : i === 0 ? batch : 64));
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1)).map(() => Math.random() * 2 - 1);
  feeds[m.name] = new ort.Tensor('float32', data, dims);
}
for (let i = 0; i < 20; i++) await session.run(feeds);
const gaps = [0, 0.1, 0.2, 0.3, 0.5, 1, 2, 5];
const times = new Map(gaps.map((g) => [g, []]));
for (let round = 0; round < 3; round++) {
  for (const g of gaps) {
    for (let i = 0; i < 100; i++) {
      const t0 = performance.now();
      while (performance.now() - t0 < g);
      const t = performance.now();
      await session.run(feeds);
      times.get(g).push(performance.now() - t);
    }
  }
}
for (const [g, t] of times) {
  t.sort((a, b) => a - b);
  process.stdout.write(`gap ${g} ms: median run ${t[t.length >> 1].toFixed(3)} ms\n`);
}
await session.release();
