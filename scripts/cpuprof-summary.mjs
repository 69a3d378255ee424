#!/usr/bin/env node
// Summarises a V8 .cpuprofile (node --cpu-prof): self time by category (where the worker's main
// thread spends its time: idle, GC, onnxruntime's JS binding, msgpack, NATS client, Flotilla code…)
// and the top functions by self time, plus a per-second timeline (busy share and onnxruntime's) to
// pick the window under load. Usage: node scripts/cpuprof-summary.mjs FILE.cpuprofile [TOP] [FROM_S:TO_S]
import { readFileSync } from 'node:fs';
import process from 'node:process';

const [file, topArg, windowArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: cpuprof-summary.mjs FILE.cpuprofile [TOP]\n');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
// Sample i lasted timeDeltas[i + 1] (the delta before the next sample).
const deltas = prof.timeDeltas;
const [fromS, toS] = windowArg ? windowArg.split(':').map(Number) : [0, Infinity];
const seconds = [];
let at = 0;
for (let i = 0; i < prof.samples.length; i++) {
  at += deltas[i];
  const dt = i + 1 < deltas.length ? deltas[i + 1] : 0;
  const sec = Math.floor(at / 1e6);
  const cf = byId.get(prof.samples[i]).callFrame;
  const s = (seconds[sec] ??= { busy: 0, ort: 0, total: 0 });
  s.total += dt;
  if (cf.functionName !== '(idle)') s.busy += dt;
  if ((cf.url ?? '').includes('onnxruntime-node/dist/backend')) s.ort += dt;
  if (at / 1e6 < fromS || at / 1e6 >= toS) continue;
  self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + dt);
}
const total = [...self.values()].reduce((a, b) => a + b, 0);

/** The category a frame's self time counts to. */
function category(cf) {
  const name = cf.functionName;
  const url = cf.url ?? '';
  if (name === '(idle)') return 'idle (waiting: onnxruntime threads, I/O)';
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)') return '(program: V8/native outside JS)';
  if (url.includes('onnxruntime')) return 'onnxruntime-node JS binding';
  if (url.includes('msgpackr')) return 'msgpackr';
  if (url.includes('@nats-io/services')) return 'nats services';
  if (url.includes('@nats-io')) return 'nats client';
  if (url.includes('prom-client')) return 'prom-client';
  if (url.includes('pino')) return 'pino';
  if (url.includes('zod')) return 'zod';
  const m = url.match(/packages\/([a-z-]+)\/dist\/([^/]+)$/);
  if (m) return `flotilla ${m[1]}/${m[2]}`;
  if (url.startsWith('node:') || url === '') return name ? `node internals` : 'native';
  return url.replace(/^.*node_modules\//, '');
}

const cats = new Map();
const funcs = new Map();
for (const [id, t] of self) {
  const cf = byId.get(id).callFrame;
  const c = category(cf);
  cats.set(c, (cats.get(c) ?? 0) + t);
  const key = `${cf.functionName || '(anonymous)'} ${(cf.url ?? '').replace(/^.*\/(node_modules|packages)\//, '')}:${cf.lineNumber + 1}`;
  funcs.set(key, (funcs.get(key) ?? 0) + t);
}
const pct = (t) => `${((100 * t) / total).toFixed(1).padStart(5)} %`;
process.stdout.write('timeline (second: busy % / onnxruntime run %)\n');
process.stdout.write(
  `${seconds
    .map((s, i) => (s ? `${i}: ${Math.round((100 * s.busy) / s.total)}/${Math.round((100 * s.ort) / s.total)}` : `${i}: -`))
    .join('  ')}\n\n`,
);
process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled${windowArg ? ` in ${windowArg} s` : ''}\n\nself time by category\n`);
for (const [c, t] of [...cats].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${pct(t)}  ${c}\n`);
process.stdout.write(`\ntop ${top} functions by self time\n`);
for (const [f, t] of [...funcs].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${pct(t)}  ${f}\n`);
