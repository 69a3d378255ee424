// Batch size tuned on a replica's own traffic, pure (no clock, no I/O: the replica reports what
// each batch took). The profile rates sizes by runs in isolation, which do not show what a larger
// batch costs a replica that reads and answers requests between its runs: on the AMD EPYC host of
// 2026-12-01 conv-classifier's batch 32 cost the worker 18 % more CPU per request than batch 16
// at 128 callers, where isolated runs rated them alike (README "Known limits"). So under load
// (full batches) the tuner compares the cap in use with half of it, batches of each size in turn,
// by the time the replica spent per item on a batch (its run and its replies), and moves down while
// the half is quicker per item by more than TUNE_MIN_GAIN. It never goes above the profile's choice
// (the base): a batch the profile found slower never runs for a trial. A key settles once; a
// new base (its profile changed) starts over.

import { MAX_TUNED_BATCH_KEYS, shapeKeyText, type TunedBatch } from '@flotilla/protocol';
import type { BatchLimits } from './batcher.js';
import { median } from './latency-window.js';

/** Batches of each of the two sizes a comparison takes. */
export const TUNE_SAMPLES = 16;
/** How much quicker per item (median) the smaller size must be to be taken: under it, the cap stays. */
export const TUNE_MIN_GAIN = 0.04;
/** Batches of neither size (load too light to fill them) after which a comparison is dropped, to start again once batches fill. */
export const TUNE_MAX_UNFILLED = 64;
/**
 * Comparisons a key may drop before it settles where it is: a load that keeps filling the cap now
 * and then but not steadily (closed-loop callers about as many as the cap split into groups that take
 * turns) would otherwise have half its batches capped at the half, on and off, for good.
 */
export const TUNE_MAX_DROPS = 2;
/** Keys tuned at once (all of them reported in heartbeats); a new one past this forgets the one whose last batch ran longest ago (hostile traffic may send any number of shapes). */
export const TUNE_MAX_KEYS = MAX_TUNED_BATCH_KEYS;

/** One key's tuning. */
export interface KeyTuning {
  /** The cap the profile (or the default) gave this key. */
  base: number;
  /** The cap the tuner settled on or compares from. */
  cap: number;
  /** A comparison in progress: the cap and its half, in turn. */
  trial?: { sizes: [number, number]; turn: 0 | 1; perItemMs: [number[], number[]]; unfilled: number };
  /** Comparisons dropped for want of full batches. */
  drops: number;
  settled: boolean;
}

/** What one settled comparison found, for the replica's log. */
export interface TuneStep {
  key: string;
  from: number;
  /** The size compared with `from`: its half. */
  half: number;
  to: number;
  /** Median ms per item of each size, in `[from's, half's]` order. */
  perItemMs: [number, number];
}

export class BatchTuner {
  private readonly keys = new Map<string, KeyTuning>();

  /**
   * The limits the next batch of `key` runs with: `base` (its profile's, or the replica's) with the
   * cap tuned. A padded base is left as it is: its batches run at one size whatever they hold.
   */
  limits(key: string, base: BatchLimits): BatchLimits {
    if (base.padTo !== undefined) return base;
    const cap = this.cap(key, base.maxBatchSize);
    return cap === base.maxBatchSize ? base : { ...base, maxBatchSize: cap };
  }

  /** `record` for a batch that ran under `base` (nothing for a padded one, which `limits` never tunes). */
  recordBatch(key: string, base: BatchLimits, items: number, ms: number): TuneStep | undefined {
    return base.padTo === undefined ? this.record(key, base.maxBatchSize, items, ms) : undefined;
  }

  /** The cap the next batch of `key` runs with, given the base its profile chose. */
  cap(key: string, base: number): number {
    const t = this.tuning(key, base);
    return t.trial ? t.trial.sizes[t.trial.turn] : t.cap;
  }

  /**
   * A batch of `key` ran `items` requests' items in `ms` (its run and replies), under the cap `cap`
   * gave it last. A full batch at the cap starts a comparison; during one, a batch counts for the
   * size it ran under when it filled it, and otherwise as unfilled. Returns the step when a
   * comparison ends.
   */
  record(key: string, base: number, items: number, ms: number): TuneStep | undefined {
    const t = this.tuning(key, base);
    // Most recently run last: a key past TUNE_MAX_KEYS forgets the one that ran longest ago, so
    // one-off shapes (a caller sending many) pass through without evicting the shapes in use.
    this.keys.delete(key);
    this.keys.set(key, t);
    if (t.settled || !(ms >= 0) || items < 1) return undefined;
    if (!t.trial) {
      if (items === t.cap && t.cap > 1) {
        t.trial = { sizes: [t.cap, Math.floor(t.cap / 2)], turn: 1, perItemMs: [[], []], unfilled: 0 };
      }
      return undefined;
    }
    const trial = t.trial;
    // The batch ran under this turn's cap: it counts for that size only if it filled it (a batch of
    // the half's size under the full cap says the load did not fill the cap, not what the half costs).
    const turn = trial.turn;
    trial.turn = turn === 0 ? 1 : 0;
    const arm = items === trial.sizes[turn] ? trial.perItemMs[turn] : undefined;
    if (!arm) {
      if (++trial.unfilled > TUNE_MAX_UNFILLED) {
        t.trial = undefined;
        if (++t.drops >= TUNE_MAX_DROPS) t.settled = true;
      }
      return undefined;
    }
    arm.push(ms / items);
    if (trial.perItemMs[0].length < TUNE_SAMPLES || trial.perItemMs[1].length < TUNE_SAMPLES) return undefined;
    const medians: [number, number] = [median(trial.perItemMs[0]), median(trial.perItemMs[1])];
    const [from, half] = trial.sizes;
    t.trial = undefined;
    if (medians[1] < medians[0] * (1 - TUNE_MIN_GAIN)) {
      t.cap = half;
      if (half <= 1) t.settled = true;
      return { key, from, half, to: half, perItemMs: medians };
    }
    t.settled = true;
    return { key, from, half, to: from, perItemMs: medians };
  }

  /** Every key's tuning as it stands, the one whose last batch ran longest ago first, as heartbeats report it (`tunedBatches`). */
  report(): TunedBatch[] {
    return [...this.keys].map(([key, t]) => ({
      shape: shapeKeyText(key),
      from: t.base,
      maxBatchSize: t.cap,
      state: t.settled ? 'settled' : t.trial ? 'comparing' : 'waiting',
    }));
  }

  /** A key's tuning as it stands (undefined: never seen). */
  state(key: string): Readonly<KeyTuning> | undefined {
    return this.keys.get(key);
  }

  private tuning(key: string, base: number): KeyTuning {
    let t = this.keys.get(key);
    if (!t || t.base !== base) {
      if (!t && this.keys.size >= TUNE_MAX_KEYS) this.keys.delete(this.keys.keys().next().value!);
      t = { base, cap: base, drops: 0, settled: base <= 1 };
      this.keys.set(key, t);
    }
    return t;
  }
}
