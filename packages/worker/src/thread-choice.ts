// Thread-setting choice, pure: which onnxruntime thread settings to try for a model on a CPU with
// `cores` usable cores, and which to keep once each was measured at the chosen batch size. A
// worker hosts several replicas that share its cores, so a thread earns its place only by speed:
// the cheapest setting within `minGain` of the fastest wins, not the fastest outright.
import { BadRequestError, type ThreadChoice, type ThreadRow, type ThreadSettings } from '@flotilla/protocol';

export type { ThreadChoice, ThreadRow, ThreadSettings };

/** Relative throughput a setting with more threads must gain to be preferred. Default 0.05 (5 %). */
export const DEFAULT_THREAD_MIN_GAIN = 0.05;

/** Threads a setting keeps busy: the intra-op pool, plus the inter-op pool in parallel mode. */
export function threadCost(t: ThreadSettings): number {
  return t.mode === 'parallel' ? t.intraOp + t.interOp : t.intraOp;
}

const key = (t: ThreadSettings) => `${t.intraOp}/${t.mode === 'parallel' ? t.interOp : 1}/${t.mode}`;

/** The same setting for onnxruntime (inter-op threads only count in parallel mode). */
export function sameThreads(a: ThreadSettings, b: ThreadSettings): boolean {
  return key(a) === key(b);
}

export function describeThreads(t: ThreadSettings): string {
  return t.mode === 'parallel' ? `${t.intraOp} intra-op × ${t.interOp} inter-op (parallel)` : `${t.intraOp} intra-op`;
}

/**
 * Settings to measure, the widest first (it is the baseline the batch sweep ran with): intra-op
 * threads `cores`, then halving to 1; with 2+ cores also parallel mode (2 inter-op, half the
 * cores each) for graphs with independent branches.
 */
export function threadCandidates(cores: number): ThreadSettings[] {
  const n = Math.max(1, Math.floor(cores));
  const out: ThreadSettings[] = [];
  for (let t = n; t >= 1; t = t === 1 ? 0 : Math.max(1, Math.floor(t / 2))) out.push({ intraOp: t, interOp: 1, mode: 'sequential' });
  if (n >= 2) out.push({ intraOp: Math.max(1, Math.floor(n / 2)), interOp: 2, mode: 'parallel' });
  const seen = new Set<string>();
  return out.filter((t) => !seen.has(key(t)) && seen.add(key(t)));
}

/**
 * The cheapest setting whose throughput is within `minGain` of the best among those meeting the
 * latency objective (all of them when none does); ties go to the faster one.
 */
export function chooseThreads(
  rows: readonly ThreadRow[],
  latencySloMs: number,
  minGain = DEFAULT_THREAD_MIN_GAIN,
): ThreadChoice | undefined {
  if (rows.length === 0) return undefined;
  const within = rows.filter((r) => r.p99Ms <= latencySloMs);
  const pool = within.length > 0 ? within : [...rows];
  const best = pool.reduce((a, b) => (b.itemsPerSec > a.itemsPerSec ? b : a));
  const good = pool.filter((r) => r.itemsPerSec * (1 + minGain) >= best.itemsPerSec);
  const pick = good.reduce((a, b) => {
    const ca = threadCost(a);
    const cb = threadCost(b);
    return cb < ca || (cb === ca && b.itemsPerSec > a.itemsPerSec) ? b : a;
  });
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
  const slo = within.length > 0 ? '' : ` (no setting meets the p99 objective of ${latencySloMs} ms)`;
  const reason =
    pick === best
      ? `${describeThreads(pick)}: fastest at batch ${pick.batch}, ${fmt(pick.itemsPerSec)} items/s${slo}`
      : `${describeThreads(pick)}: ${fmt(pick.itemsPerSec)} items/s at batch ${pick.batch}, within ${Math.round(minGain * 100)}% of ` +
        `${describeThreads(best)} (${fmt(best.itemsPerSec)}) with ${threadCost(best) - threadCost(pick)} fewer thread(s)${slo}`;
  return { intraOp: pick.intraOp, interOp: pick.mode === 'parallel' ? pick.interOp : 1, mode: pick.mode, reason };
}

/**
 * Why thread settings do not fit a worker with `usableCores` usable cores (`inventory.cpu.usableCores
 * ?? cores`), or undefined when they fit. Each pool may use at most every usable core: more threads
 * than cores only contend (1,024 intra-op threads on 2 cores starved the worker's heartbeat for 6 s).
 * `what` names the settings in the message (`threads` for a deployment's `threads.intraOp`).
 */
export function threadsProblem(t: { intraOp: number; interOp?: number }, usableCores: number, what = 'threads'): string | undefined {
  const cores = Math.max(1, Math.floor(usableCores));
  for (const [field, n] of [
    ['intraOp', t.intraOp],
    ['interOp', t.interOp],
  ] as const) {
    if (n !== undefined && n > cores) return `${what}.${field} ${n} exceeds this worker's ${cores} usable core${cores === 1 ? '' : 's'}`;
  }
  return undefined;
}

/** Throws BAD_REQUEST when `threadsProblem` finds one. */
export function assertThreadsFit(t: { intraOp: number; interOp?: number }, usableCores: number, what = 'threads'): void {
  const problem = threadsProblem(t, usableCores, what);
  if (!problem) return;
  const data = {
    usableCores: Math.max(1, Math.floor(usableCores)),
    intraOp: t.intraOp,
    ...(t.interOp !== undefined ? { interOp: t.interOp } : {}),
  };
  throw new BadRequestError(problem, { data });
}
