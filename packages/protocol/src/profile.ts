// A model's profile as the profiler writes it to the profiles bucket (its schema, which every
// reader applies, is ModelProfileSchema in control-schemas.ts). A model with dynamic non-batch
// dims is profiled once per input shape: such a profile carries the `shape` it was measured at.
import type { ThreadSettings } from './deploy-spec.js';

/** The non-batch dims of every input a profile was measured at, in the model's input order, e.g. `{ x: [3, 64, 96] }`. */
export type ProfileShape = Record<string, number[]>;

/**
 * The text key of a shape: `name:d1xd2x…` per input, joined by `|` (input order), the same key
 * the replica's batcher groups requests by, e.g. `x:3x64x96`.
 */
export function shapeKey(shape: ProfileShape): string {
  return Object.entries(shape)
    .map(([name, dims]) => `${name}:${dims.join('x')}`)
    .join('|');
}

export interface ProfileRow {
  batch: number;
  runs: number;
  p50Ms: number;
  p99Ms: number;
  itemsPerSec: number;
  /** Process RSS above the pre-load baseline at its peak during these runs, bytes. */
  peakBytes: number;
}

export interface BatchChoice {
  maxBatchSize: number;
  maxQueueDelayMs: number;
  reason: string;
  /**
   * What running the chosen batch size right after another size cost over its median run, ms (a
   * kernel that rebuilds its plan for a new input shape: onnxruntime's cuDNN convolutions on CUDA).
   */
  shapeChangeMs?: number;
  /**
   * What a run cost after a pause (other work) over one right after another run, ms, at the first
   * profiled size whose run took 1 ms: the replica reads and answers between its runs, so the
   * choice counts it once per run.
   */
  resumeMs?: number;
  /** Smaller batches run padded to this many rows (set when a change of shape costs more than the padding). */
  padTo?: number;
}

/** One thread setting measured at the chosen batch size. */
export interface ThreadRow extends ThreadSettings {
  batch: number;
  runs: number;
  p50Ms: number;
  p99Ms: number;
  itemsPerSec: number;
}

export interface ThreadChoice extends ThreadSettings {
  reason: string;
}

/** A model measured on one device class (stored in the profiles KV bucket). */
export interface ModelProfile {
  v: number;
  digest: string;
  deviceClass: string;
  ortVersion: string;
  createdAt: number;
  latencySloMs: number;
  budgetMs: number;
  /** Wall time the profile took, ms. */
  tookMs: number;
  rows: ProfileRow[];
  /** Why the sweep ended where it did. */
  stoppedBecause: string;
  /** Set when the model could not be profiled (and defaults apply). */
  skipped?: string;
  /** For a model with dynamic non-batch dims: the input shape this profile was measured at (absent: the model's only shape). */
  shape?: ProfileShape;
  chosen: BatchChoice;
  /** Session create from the compile cache vs plain (best of two each), and whether the cache helps. */
  compile?: { plainCreateMs: number; compiledCreateMs: number; helps: boolean; reason: string };
  /** Thread settings measured at the chosen batch size and the one chosen (CPU provider, when tuned). */
  threads?: ThreadChoice & { rows: ThreadRow[]; tookMs: number };
  memory: {
    /** RSS growth from creating the session, bytes. */
    sessionBytes: number;
    /** Peak RSS growth while running the chosen batch size, bytes. */
    peakBytes: number;
    /** What a replica should be charged: max(session, peak at the chosen batch, file size). */
    replicaBytes: number;
  };
  /**
   * Where the session it measured ran: `thread`, on a thread of its own, whose memory (≈ 10 MiB: its
   * V8 isolate) the figures above then include; absent: on the event loop, or not recorded (a
   * profile stored before 2026-12-01, a per-shape profile: its replica is charged from the shapes'
   * footprints, not through this).
   */
  sessionHost?: 'thread';
}
