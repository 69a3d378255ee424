// The many-model benchmark's traffic, pure: `callers` independent callers, each sending on its own
// seeded Poisson schedule (open loop: a caller does not wait for its previous answer), every
// request to a model drawn from Zipf popularity over ranks; halfway through, the rank → model
// mapping is reshuffled (a popularity shift). The same options give the same trace, request for
// request, so every eviction policy serves exactly the same requests at the same offsets.
import { WeightedSampler, seededRandom, shuffled, zipfWeights } from '@flotilla/loadgen';

export interface TraceOptions {
  models: number;
  /** Requests per second, all callers together. */
  rate: number;
  callers: number;
  durationMs: number;
  zipf: number;
  seed: number;
  /** When the popularity ranks are reshuffled, ms from the start. Default half the duration. */
  shiftAtMs?: number;
}

export interface TraceRequest {
  /** Offset from the start, ms. */
  at: number;
  caller: number;
  /** Popularity rank at that time (0 = most requested). */
  rank: number;
  /** Index of the model. */
  model: number;
}

/** Rank → model index before and after the shift. */
export function rankings(models: number, seed: number): [number[], number[]] {
  return [shuffled(models, seededRandom(seed)), shuffled(models, seededRandom(seed + 1))];
}

/** Every request of the run, in time order. */
export function modelTrace(o: TraceOptions): TraceRequest[] {
  const sampler = new WeightedSampler(zipfWeights(o.models, o.zipf));
  const [before, after] = rankings(o.models, o.seed);
  const shiftAt = o.shiftAtMs ?? o.durationMs / 2;
  const perCallerMs = (1000 * o.callers) / o.rate; // mean gap of one caller
  const out: TraceRequest[] = [];
  for (let caller = 0; caller < o.callers; caller++) {
    const rand = seededRandom(o.seed + 1000 + caller);
    for (let at = -Math.log(1 - rand()) * perCallerMs; at < o.durationMs; at += -Math.log(1 - rand()) * perCallerMs) {
      const rank = sampler.pick(rand());
      out.push({ at, caller, rank, model: (at < shiftAt ? before : after)[rank]! });
    }
  }
  return out.sort((a, b) => a.at - b.at || a.caller - b.caller);
}

/** The models a scan at `at` walks: the cold half of the ranks then (least popular last), as model indexes. */
export function scanModels(models: number, seed: number, at: number, shiftAtMs: number): number[] {
  const ranking = rankings(models, seed)[at < shiftAtMs ? 0 : 1];
  return ranking.slice(Math.floor(models / 2));
}
