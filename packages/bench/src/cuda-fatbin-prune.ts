// `scripts/gpu-check pack`: a CUDA library with the device code of one GPU architecture kept (see cuda-fatbin.ts).
//   node packages/bench/dist/cuda-fatbin-prune.js IN OUT 90[,100]
import { readFileSync, writeFileSync } from 'node:fs';
import { pruneFatbins } from './cuda-fatbin.js';

const [input, output, archs] = process.argv.slice(2);
if (!input || !output || !archs) {
  process.stderr.write('usage: cuda-fatbin-prune IN OUT ARCH[,ARCH] (e.g. 90 for H100/H200)\n');
  process.exit(2);
}
const keep = archs.split(',').map((a) => Number(a.replace(/^sm_/, '')));
if (keep.some((a) => !Number.isInteger(a) || a <= 0)) {
  process.stderr.write(`architectures must be numbers like 90 or sm_90, got '${archs}'\n`);
  process.exit(2);
}
const buf = readFileSync(input);
const r = pruneFatbins(buf, keep);
writeFileSync(output, buf);
process.stdout.write(`${JSON.stringify({ input, output, keep: keep.map((a) => `sm_${a}`), ...r })}\n`);
