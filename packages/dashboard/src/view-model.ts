// What the dashboard's server sends the page (one JSON snapshot per change over server-sent events),
// and the few pure helpers the page uses on it. No imports: the browser bundle includes this file
// as is (web/tsconfig.json), so the server and the page agree on one shape.

/** Bumped when the snapshot's shape changes incompatibly (the page says so instead of misdrawing). */
export const SNAPSHOT_VERSION = 1;

export interface DashboardSnapshot {
  v: number;
  /** Epoch ms the snapshot was taken. */
  at: number;
  cluster: string;
  /** Scale and undeploy buttons are shown (the server was started with `--allow-actions`). */
  allowActions: boolean;
  /** Set when the cluster could not be read this time (no head answering, FORBIDDEN, ...): the rest is the last good state. */
  error?: { code: string; message: string };
  heads: HeadsView;
  workers: WorkerView[];
  deployments: DeploymentRow[];
  /** Recent events, newest first. */
  events: EventRow[];
  profiles: ProfileView[];
  /** Models whose profiles could not be read, with why. */
  profileErrors: Array<{ model: string; code: string; message: string }>;
}

export interface HeadView {
  id: string;
  pid: number;
  startedAt: number;
  /** From the heads' presence (absent from a head older than it): the host, the role it reports, since when, last heard (epoch ms). */
  host?: string;
  role?: 'leader' | 'standby';
  since?: number;
  lastSeenAt?: number;
}

export interface HeadsView {
  leader?: HeadView;
  /**
   * The other heads the leader heard lately: standbys, and a former leader until its presence
   * expires (its `role` says `leader`). `standbyNote` is set when the leader does not report them.
   */
  standbys: HeadView[];
  standbyNote?: string;
}

export interface MemorySegment {
  model: string;
  replica: string;
  bytes: number;
  /** Bytes before this segment on the bar (segments are laid end to end). */
  offsetBytes: number;
}

export interface DeviceBar {
  id: string;
  kind: string;
  executionProvider: string;
  policy: string;
  capacityBytes: number;
  budgetBytes: number;
  usedBytes: number;
  /** Budget minus used (negative when over). */
  freeBytes: number;
  /** Used as a fraction of the budget (0 when the budget is 0). */
  usedFraction: number;
  /** Budget as a fraction of the capacity: where the budget line sits on the bar. */
  budgetFraction: number;
  segments: MemorySegment[];
  /** One sentence for screen readers and the title attribute. */
  summary: string;
}

export interface WorkerView {
  id: string;
  hostname: string;
  state: string;
  alive: boolean;
  /** Ms since the head last heard the worker's heartbeat (as the head reported it). */
  lastSeenAgoMs: number;
  cpu: string;
  gpus: number;
  devices: DeviceBar[];
}

export interface ReplicaRow {
  id: string;
  worker: string;
  device: string;
  state: string;
  queueDepth: number;
  inFlight: number;
  processed: number;
  failed: number;
  /** Items per second over the last sample interval (0 for the first sample). */
  itemsPerSec: number;
  /** Latency of its recent successful requests (arrival → answer, ms), as its heartbeats report it; absent when it answered none lately. */
  latencyMs?: { p50: number; p99: number; count: number };
  /** Recent samples, oldest first (the replica's items/s and p99 sparklines). */
  series: ReplicaPoint[];
  bytes: number;
  pinned: boolean;
  executionProvider?: string;
  maxBatchSize?: number;
  /** Sizes its batch-size tuner moved its batches down to on its own traffic (absent: none). */
  tunedBatchSizes?: number[];
  error?: { code: string; message: string };
}

export interface ScalingDecision {
  at: number;
  from?: number;
  to?: number;
  reason: string;
}

export interface SeriesPoint {
  /** Epoch seconds (uPlot's x unit). */
  t: number;
  itemsPerSec: number;
  queueDepth: number;
  inFlight: number;
}

export interface ReplicaPoint {
  /** Epoch seconds (uPlot's x unit). */
  t: number;
  itemsPerSec: number;
  /** p99 latency, ms; null when the replica answered no request lately (a gap in the line). */
  p99Ms: number | null;
}

export interface DeploymentRow {
  name: string;
  device: string;
  desired: number;
  ready: number;
  dormant: boolean;
  pinned: boolean;
  pendingReason?: { code: string; message: string };
  autoscale?: { min: number; max: number; targetPerReplica?: number };
  lastScaling?: ScalingDecision;
  maxBatchSize?: number;
  /** Sizes any replica tuned its batches down to on its own traffic, smallest first (absent: none). */
  tunedBatchSizes?: number[];
  maxQueueDelayMs?: number;
  /** Batch sizes run so far over all replicas, ascending. */
  batchHistogram: Array<{ batch: string; count: number }>;
  queueDepth: number;
  inFlight: number;
  itemsPerSec: number;
  /** Recent samples, oldest first (sparklines). */
  series: SeriesPoint[];
  /** p99 of one batch at the chosen batch size, from the model's profile (ms), when profiled. */
  profileP99Ms?: number;
  replicas: ReplicaRow[];
}

export interface EventRow {
  at: number;
  type: string;
  model?: string;
  worker?: string;
  device?: string;
  replica?: string;
  bytes?: number;
  reason?: string;
  /** One line: what happened, for the timeline. */
  text: string;
}

export interface ProfilePoint {
  batch: number;
  itemsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  peakBytes: number;
}

export interface ProfileView {
  /** The deployment it is shown under (the first by name of those serving the same model file). */
  model: string;
  /** Every deployment serving this model file (profiles are per file: one digest, one profile). */
  models: string[];
  deviceClass: string;
  /** The input shape for a model profiled per shape (`x:3x64x96`); absent for a model with one shape. */
  shape?: string;
  createdAt: number;
  latencySloMs: number;
  chosenBatch: number;
  chosenQueueDelayMs: number;
  chosenReason: string;
  stoppedBecause: string;
  skipped?: string;
  /** One per profiled batch size, ascending. */
  points: ProfilePoint[];
  threads?: {
    chosen: string;
    reason: string;
    rows: Array<{ setting: string; batch: number; itemsPerSec: number; p99Ms: number; chosen: boolean }>;
  };
  compile?: { plainCreateMs: number; compiledCreateMs: number; helps: boolean; reason: string };
  replicaBytes: number;
}

/** Events of one model (all when `model` is empty), keeping their order. */
export function filterEvents(events: readonly EventRow[], model: string | undefined): EventRow[] {
  return model ? events.filter((e) => e.model === model) : [...events];
}

/** Bytes for people: `512 B`, `1.5 KiB`, `40 MiB`, `1.25 GiB`. */
export function formatBytes(n: number): string {
  const sign = n < 0 ? '-' : '';
  let v = Math.abs(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 || v >= 100 || Number.isInteger(v) ? 0 : v >= 10 ? 1 : 2;
  return `${sign}${Number(v.toFixed(digits))} ${units[i]}`;
}

/** A number for people: at most 3 significant digits below 1000, thousands grouped above. */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return String(Number(n.toPrecision(3)));
}
