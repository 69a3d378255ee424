#!/usr/bin/env node
// What a replica's memory work costs per request when each request arrives in a buffer of its own
// (as nats.js gathers a payload that spans socket reads) and is then copied into the batch: in a
// fresh buffer each time (left to the collector) against one reused from a pool (the worker's
// payload pool, packages/bus/src/payload-pool.ts). Batches of BATCH requests of SIZE bytes, µs
// per request, three rounds of a second each way. Run it pinned:
//   taskset -c 1 node scripts/payload-gather-cost.mjs [SIZE=49152] [BATCH=16]
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import process from 'node:process';

const size = Number(process.argv[2] ?? 49_152);
const batchItems = Number(process.argv[3] ?? 16);
const batch = new Uint8Array(batchItems * size);
const wire = Buffer.allocUnsafeSlow(size).fill(3); // what the socket reads hold

/** µs per request over about a second: gather each request (`take` + copy), then copy the batch together. */
function measure(take, giveBack) {
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 1000) {
    const held = [];
    for (let j = 0; j < batchItems; j++) {
      const p = take();
      p.set(wire);
      held.push(p);
    }
    for (let j = 0; j < batchItems; j++) batch.set(held[j], j * size);
    for (const p of held) giveBack(p);
    n += batchItems;
  }
  return ((performance.now() - t0) * 1000) / n;
}

const free = [];
const fresh = () => Buffer.allocUnsafeSlow(size);
const pooled = () => free.pop() ?? Buffer.allocUnsafeSlow(size);
for (let round = 1; round <= 3; round++) {
  const a = measure(fresh, () => undefined);
  const b = measure(pooled, (p) => free.push(p));
  process.stdout.write(
    `round ${round}: fresh ${a.toFixed(2)} µs per request, reused ${b.toFixed(2)} µs (size ${size}, batch ${batchItems})\n`,
  );
}
