#!/usr/bin/env node
// CPU the NATS client's parser spends per message when payloads span socket reads: MSG frames of
// SIZE bytes fed in 64 KiB reads (as Node's socket delivers them), parsed 7 times, median and
// least µs per message. It pins patches/@nats-io__nats-core@3.4.0.patch's gain with a figure that
// holds on a shared machine (CPU time of a fixed input, not a rate). Run it pinned:
//   taskset -c 1 node scripts/nats-parse-cost.mjs [SIZE=49212] [FRAMES=2000]
import { createRequire } from 'node:module';
import process from 'node:process';
import { URL } from 'node:url';
import { TextEncoder } from 'node:util';

const require = createRequire(new URL('../packages/bus/package.json', import.meta.url));
const { Parser } = require('@nats-io/nats-core/internal');
const size = Number(process.argv[2] ?? 49_212);
const frames = Number(process.argv[3] ?? Math.max(20, Math.floor(100_000_000 / size)));
const READ = 65_536;
const te = new TextEncoder();
const head = te.encode(`MSG infer.m.r 1 _INBOX.abcdefghijklmnop.1234 ${size}\r\n`);
const frame = new Uint8Array(head.length + size + 2);
frame.set(head);
frame.fill(7, head.length, head.length + size);
frame.set(te.encode('\r\n'), head.length + size);
const stream = new Uint8Array(frame.length * frames);
for (let i = 0; i < frames; i++) stream.set(frame, i * frame.length);
const reads = [];
for (let o = 0; o < stream.length; o += READ) reads.push(stream.slice(o, o + READ));

let got = 0;
const dispatcher = { push: () => void got++ };
const run = () => {
  const p = new Parser(dispatcher);
  for (const r of reads) p.parse(r);
};
for (let i = 0; i < 3; i++) run();
const us = [];
for (let r = 0; r < 7; r++) {
  got = 0;
  const c0 = process.cpuUsage();
  run();
  const c = process.cpuUsage(c0);
  if (got !== frames) throw new Error(`parsed ${got} of ${frames} messages`);
  us.push((c.user + c.system) / frames);
}
us.sort((a, b) => a - b);
process.stdout.write(
  `${size}-byte payloads in ${READ}-byte reads: ${us[3].toFixed(2)} µs per message (median of 7), least ${us[0].toFixed(2)}; ` +
    `${((us[3] * (1 << 20)) / size / 1000).toFixed(2)} ms per MiB\n`,
);
