// Which model each request of a mixed load goes to, pure: a seeded PRNG, Zipf popularity, a
// weighted sampler, and the `--mix` file format. The same seed always gives the same sequence,
// so two runs (two eviction policies, two builds) replay the same trace.
import { BadRequestError } from '@flotilla/protocol';

/** mulberry32: a small, fast, deterministic PRNG over [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Zipf popularity over `n` ranks: weight of rank k (0-based) ∝ 1 / (k + 1)^s, summing to 1. */
export function zipfWeights(n: number, s: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new BadRequestError(`zipf needs at least one model, got ${n}`);
  if (!(Number.isFinite(s) && s >= 0)) throw new BadRequestError(`zipf exponent must be a non-negative number, got ${s}`);
  const raw = Array.from({ length: n }, (_, k) => 1 / (k + 1) ** s);
  const total = raw.reduce((a, b) => a + b, 0);
  return raw.map((w) => w / total);
}

/** Picks an index with probability proportional to its weight, from a uniform draw in [0, 1). */
export class WeightedSampler {
  private readonly cumulative: number[];

  constructor(weights: readonly number[]) {
    if (weights.length === 0) throw new BadRequestError('a mix needs at least one entry');
    let sum = 0;
    this.cumulative = weights.map((w, i) => {
      if (!(Number.isFinite(w) && w >= 0)) throw new BadRequestError(`weight ${i} must be a non-negative number, got ${w}`);
      return (sum += w);
    });
    if (!(sum > 0)) throw new BadRequestError('a mix needs a positive total weight');
  }

  get size(): number {
    return this.cumulative.length;
  }

  /** The index whose cumulative share covers `u` (binary search; a zero weight is never picked); `u` outside [0, 1) is clamped. */
  pick(u: number): number {
    const total = this.cumulative[this.cumulative.length - 1]!;
    const x = Math.min(Math.max(u, 0), 1 - Number.EPSILON) * total;
    let lo = 0;
    let hi = this.cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cumulative[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** A permutation of 0..n-1 (Fisher–Yates) from `rand`: popularity ranks reshuffled to model a shift. */
export function shuffled(n: number, rand: () => number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** One line of a `--mix` file: requests to `model` with the tensor JSON in `input`, `weight` of the traffic. */
export interface MixEntry {
  model: string;
  input: string;
  weight: number;
}

/**
 * Parses a `--mix` file: either JSON (an array of `{ model, input, weight? }`) or lines of
 * `model input [weight]` separated by spaces, tabs or commas (`#` starts a comment; weight
 * defaults to 1). Paths are returned as written (the caller resolves them).
 */
export function parseMix(text: string): MixEntry[] {
  const trimmed = text.trim();
  const entries: MixEntry[] = [];
  if (trimmed.startsWith('[')) {
    let raw: unknown;
    try {
      raw = JSON.parse(trimmed);
    } catch (err) {
      throw new BadRequestError(`mix file is not valid JSON: ${(err as Error).message}`);
    }
    (raw as unknown[]).forEach((e, i) => {
      const o = e as Record<string, unknown> | null;
      if (!o || typeof o !== 'object' || typeof o.model !== 'string' || typeof o.input !== 'string')
        throw new BadRequestError(`mix entry ${i} needs "model" and "input" strings`);
      entries.push(entry(o.model, o.input, o.weight === undefined ? 1 : Number(o.weight), `entry ${i}`));
    });
  } else {
    text.split('\n').forEach((line, i) => {
      const fields = line
        .replace(/#.*/, '')
        .trim()
        .split(/[\s,]+/)
        .filter(Boolean);
      if (fields.length === 0) return;
      if (fields.length > 3) throw new BadRequestError(`mix line ${i + 1}: expected "model input [weight]", got ${fields.length} fields`);
      entries.push(entry(fields[0]!, fields[1] ?? '', fields[2] === undefined ? 1 : Number(fields[2]), `line ${i + 1}`));
    });
  }
  if (entries.length === 0) throw new BadRequestError('mix file has no entries');
  if (!entries.some((e) => e.weight > 0)) throw new BadRequestError('mix file needs a positive weight');
  return entries;
}

function entry(model: string, input: string, weight: number, where: string): MixEntry {
  if (!model) throw new BadRequestError(`mix ${where}: no model`);
  if (!input) throw new BadRequestError(`mix ${where}: no input file for '${model}'`);
  if (!(Number.isFinite(weight) && weight >= 0)) throw new BadRequestError(`mix ${where}: weight must be a non-negative number`);
  return { model, input, weight };
}
