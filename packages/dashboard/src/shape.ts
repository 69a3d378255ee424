// The dashboard's data shaping: cluster status, events and profiles (as the SDK returns them) into
// the page's view model (view-model.ts). Pure functions over plain data, table-tested in
// shape.test.ts; the feed (feed.ts) only fetches and calls `buildSnapshot`.
import { shapeKey, tunedBelow, type ClusterStatus, type EventMessage, type ModelProfile, type WorkerStatus } from '@flotilla/protocol';
import { replicaKey } from './history.js';
import {
  SNAPSHOT_VERSION,
  formatBytes,
  type DashboardSnapshot,
  type DeploymentRow,
  type DeviceBar,
  type EventRow,
  type HeadsView,
  type ProfileView,
  type ReplicaPoint,
  type ReplicaRow,
  type ScalingDecision,
  type SeriesPoint,
  type WorkerView,
} from './view-model.js';

/** Why standby heads are not listed: a head older than the heads' presence names itself only. */
export const STANDBY_NOTE = 'this leading head does not report the other heads (it predates head presence)';

type Device = WorkerStatus['devices'][number];

/** A device's memory bar: used / budget / capacity, each replica's charge a segment laid end to end. */
export function deviceBar(d: Device): DeviceBar {
  let offset = 0;
  const segments = [...d.models]
    .sort((a, b) => a.name.localeCompare(b.name) || a.replica.localeCompare(b.replica))
    .map((m) => {
      const s = { model: m.name, replica: m.replica, bytes: m.bytes, offsetBytes: offset };
      offset += m.bytes;
      return s;
    });
  const freeBytes = d.budgetBytes - d.usedBytes;
  const models = segments.length === 0 ? 'no replicas' : segments.map((s) => `${s.model} ${formatBytes(s.bytes)}`).join(', ');
  return {
    id: d.id,
    kind: d.kind,
    executionProvider: d.executionProvider,
    policy: d.policy,
    capacityBytes: d.capacityBytes,
    budgetBytes: d.budgetBytes,
    usedBytes: d.usedBytes,
    freeBytes,
    usedFraction: d.budgetBytes > 0 ? d.usedBytes / d.budgetBytes : 0,
    budgetFraction: d.capacityBytes > 0 ? Math.min(1, d.budgetBytes / d.capacityBytes) : 1,
    segments,
    summary:
      `${d.id}: ${formatBytes(d.usedBytes)} used of a ${formatBytes(d.budgetBytes)} budget ` +
      `(capacity ${formatBytes(d.capacityBytes)}, eviction ${d.policy}): ${models}`,
  };
}

export function workerViews(status: ClusterStatus): WorkerView[] {
  return [...status.workers]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((w) => ({
      id: w.id,
      hostname: w.inventory.hostname,
      state: w.alive ? w.state : `${w.state} (not heard from)`,
      alive: w.alive,
      lastSeenAgoMs: Math.max(0, w.lastSeenMs),
      cpu: `${w.inventory.cpu.usableCores ?? w.inventory.cpu.cores} cores, ${w.inventory.cpu.model}`,
      gpus: w.inventory.gpus.length,
      devices: w.devices.map(deviceBar),
    }));
}

/** The newest `scaled` event of a model: the last scaling decision and its reason. */
export function lastScaling(events: readonly EventMessage[], model: string): ScalingDecision | undefined {
  let last: EventMessage | undefined;
  for (const e of events) if (e.type === 'scaled' && e.model === model && (!last || e.at >= last.at)) last = e;
  if (!last) return undefined;
  const data = (last.data ?? {}) as { from?: unknown; to?: unknown };
  return {
    at: last.at,
    ...(typeof data.from === 'number' ? { from: data.from } : {}),
    ...(typeof data.to === 'number' ? { to: data.to } : {}),
    reason: last.reason ?? '',
  };
}

/** Histogram keys are batch sizes (`'8'`) or `'>4096'`: numeric order, the overflow key last. */
function byBatchKey(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isNaN(na)) return 1;
  if (Number.isNaN(nb)) return -1;
  return na - nb;
}

export interface DeploymentInputs {
  events: readonly EventMessage[];
  /** Items/s per replica (`worker/replica`), from history.ts. */
  rates: Readonly<Record<string, number>>;
  series: Readonly<Record<string, SeriesPoint[]>>;
  /** Per replica (`worker/replica`), from history.ts. */
  replicaSeries?: Readonly<Record<string, ReplicaPoint[]>>;
  profiles: ReadonlyMap<string, ModelProfile[]>;
}

export function deploymentRows(status: ClusterStatus, inputs: DeploymentInputs): DeploymentRow[] {
  // Every replica a worker reports, by id: the live counters the placed list lacks.
  const live = new Map<string, { worker: string; r: WorkerStatus['replicas'][number] }>();
  for (const w of status.workers) for (const r of w.replicas) live.set(r.id, { worker: w.id, r });
  return [...status.deployments]
    .sort((a, b) => a.spec.name.localeCompare(b.spec.name))
    .map((d) => {
      const name = d.spec.name;
      const histogram = new Map<string, number>();
      const replicas: ReplicaRow[] = d.replicas.map((p) => {
        const l = live.get(p.id);
        const r = l?.r;
        if (r && r.state !== 'loading')
          for (const [k, n] of Object.entries(r.batchHistogram)) histogram.set(k, (histogram.get(k) ?? 0) + n);
        const error = p.error ?? r?.error;
        const tuned = r && r.state !== 'loading' ? tunedBelow(r.tunedBatches) : [];
        return {
          id: p.id,
          worker: p.workerId,
          device: p.device,
          state: p.state,
          queueDepth: r?.queueDepth ?? p.queueDepth ?? 0,
          inFlight: r?.inFlight ?? 0,
          processed: r?.processed ?? 0,
          failed: r?.failed ?? 0,
          itemsPerSec: inputs.rates[replicaKey(p.workerId, p.id)] ?? 0,
          ...(r && r.state !== 'loading' && r.latencyMs ? { latencyMs: { ...r.latencyMs } } : {}),
          series: inputs.replicaSeries?.[replicaKey(p.workerId, p.id)] ?? [],
          bytes: r?.bytes ?? 0,
          pinned: r?.pinned ?? d.spec.pin,
          ...(r && r.state !== 'loading' ? { executionProvider: r.executionProvider, maxBatchSize: r.batching.maxBatchSize } : {}),
          ...(tuned.length ? { tunedBatchSizes: tuned } : {}),
          ...(error ? { error: { code: error.code, message: error.message } } : {}),
        };
      });
      const series = inputs.series[name] ?? [];
      const latest = series[series.length - 1];
      const min = d.spec.minReplicas;
      const max = d.spec.maxReplicas;
      const chosen = (inputs.profiles.get(name) ?? []).find((p) => !p.skipped && !p.shape);
      const p99 = chosen?.rows.find((row) => row.batch === chosen.chosen.maxBatchSize)?.p99Ms;
      const batchSize = replicas.find((r) => r.maxBatchSize !== undefined)?.maxBatchSize ?? d.spec.batching.maxBatchSize;
      return {
        name,
        device: d.spec.device,
        desired: d.spec.replicas,
        ready: d.ready,
        dormant: d.dormant === true,
        pinned: d.spec.pin,
        ...(d.pendingReason ? { pendingReason: { code: d.pendingReason.code, message: d.pendingReason.message } } : {}),
        ...(min !== undefined && max !== undefined && min !== max
          ? {
              autoscale: {
                min,
                max,
                ...(d.spec.autoscale.targetPerReplica !== undefined ? { targetPerReplica: d.spec.autoscale.targetPerReplica } : {}),
              },
            }
          : {}),
        ...optional('lastScaling', lastScaling(inputs.events, name)),
        ...optional('maxBatchSize', batchSize),
        ...optional('tunedBatchSizes', tunedSizes(replicas)),
        ...optional('maxQueueDelayMs', d.spec.batching.maxQueueDelayMs),
        batchHistogram: [...histogram.keys()].sort(byBatchKey).map((batch) => ({ batch, count: histogram.get(batch)! })),
        queueDepth: replicas.reduce((s, r) => s + r.queueDepth, 0),
        inFlight: replicas.reduce((s, r) => s + r.inFlight, 0),
        itemsPerSec: latest?.itemsPerSec ?? 0,
        series,
        ...optional('profileP99Ms', p99),
        replicas,
      };
    });
}

function optional<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };
}

/** One line per event, for the timeline. */
export function eventText(e: EventMessage): string {
  const where = [e.worker, e.device].filter(Boolean).join('/');
  const parts = [e.type.replace(/_/g, ' ')];
  if (e.model) parts.push(e.model);
  if (where) parts.push(`on ${where}`);
  if (e.type === 'scaled') {
    const data = (e.data ?? {}) as { from?: unknown; to?: unknown };
    if (typeof data.from === 'number' && typeof data.to === 'number') parts.push(`${data.from} → ${data.to} replicas`);
  }
  if (e.bytes !== undefined) parts.push(`(${formatBytes(e.bytes)})`);
  return e.reason ? `${parts.join(' ')}: ${e.reason}` : parts.join(' ');
}

/** Events newest first, each with its timeline line. */
export function eventRows(events: readonly EventMessage[]): EventRow[] {
  return [...events]
    .sort((a, b) => b.at - a.at)
    .map((e) => ({
      at: e.at,
      type: e.type,
      ...optional('model', e.model),
      ...optional('worker', e.worker),
      ...optional('device', e.device),
      ...optional('replica', e.replica),
      ...optional('bytes', e.bytes),
      ...optional('reason', e.reason),
      text: eventText(e),
    }));
}

function threadSetting(t: { intraOp: number; interOp: number; mode: string }): string {
  return t.mode === 'parallel' ? `${t.intraOp} intra-op × ${t.interOp} inter-op (parallel)` : `${t.intraOp} intra-op`;
}

/** A model's profiles as the page plots them: one per device class and shape, points by batch size. */
export function profileViews(model: string, profiles: readonly ModelProfile[], models: string[] = [model]): ProfileView[] {
  return profiles
    .map((p): ProfileView => {
      const chosenThreads = p.threads ? threadSetting(p.threads) : undefined;
      return {
        model,
        models,
        deviceClass: p.deviceClass,
        ...optional('shape', p.shape ? shapeKey(p.shape) : undefined),
        createdAt: p.createdAt,
        latencySloMs: p.latencySloMs,
        chosenBatch: p.chosen.maxBatchSize,
        chosenQueueDelayMs: p.chosen.maxQueueDelayMs,
        chosenReason: p.chosen.reason,
        stoppedBecause: p.stoppedBecause,
        ...optional('skipped', p.skipped),
        points: [...p.rows]
          .sort((a, b) => a.batch - b.batch)
          .map((r) => ({ batch: r.batch, itemsPerSec: r.itemsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, peakBytes: r.peakBytes })),
        ...(p.threads && chosenThreads
          ? {
              threads: {
                chosen: chosenThreads,
                reason: p.threads.reason,
                rows: p.threads.rows.map((r) => ({
                  setting: threadSetting(r),
                  batch: r.batch,
                  itemsPerSec: r.itemsPerSec,
                  p99Ms: r.p99Ms,
                  chosen: threadSetting(r) === chosenThreads,
                })),
              },
            }
          : {}),
        ...optional('compile', p.compile),
        replicaBytes: p.memory.replicaBytes,
      };
    })
    .sort((a, b) => a.deviceClass.localeCompare(b.deviceClass) || (a.shape ?? '').localeCompare(b.shape ?? ''));
}

/**
 * The leader (the head that answered) and the other heads it lists: standbys, and a former leader
 * until its presence expires, leaders first, then by id. A status without `heads` (an older head)
 * gives the leader alone and says why.
 */
export function headsView(status: ClusterStatus): HeadsView {
  const h = status.head;
  const leader = h ? { id: h.id ?? `pid ${h.pid}`, pid: h.pid, startedAt: h.startedAt } : undefined;
  if (!status.heads) return { ...(leader ? { leader } : {}), standbys: [], standbyNote: STANDBY_NOTE };
  const view = (x: NonNullable<ClusterStatus['heads']>[number]) => ({
    id: x.id,
    pid: x.pid,
    startedAt: x.startedAt,
    host: x.host,
    role: x.role,
    since: x.since,
    lastSeenAt: x.lastSeenAt,
  });
  const self = status.heads.find((x) => x.id === leader?.id);
  return {
    ...(leader ? { leader: self ? view(self) : leader } : {}),
    standbys: status.heads
      .filter((x) => x !== self)
      .map(view)
      .sort((a, b) => (a.role === b.role ? a.id.localeCompare(b.id) : a.role === 'leader' ? -1 : 1)),
  };
}

/**
 * Profiles belong to a model file (its digest): deployments of the same file share them, so each
 * file's profiles are shown once, under the first of its deployments by name (a serving one first), naming all of them.
 */
export function profilesByFile(status: ClusterStatus, profiles: ReadonlyMap<string, ModelProfile[]>): ProfileView[] {
  const byDigest = new Map<string, string[]>();
  const serving = new Set(status.deployments.filter((d) => d.ready > 0).map((d) => d.spec.name));
  for (const d of [...status.deployments].sort((a, b) => a.spec.name.localeCompare(b.spec.name))) {
    (byDigest.get(d.spec.digest) ?? byDigest.set(d.spec.digest, []).get(d.spec.digest)!).push(d.spec.name);
  }
  const out: ProfileView[] = [];
  for (const names of byDigest.values()) {
    const has = (n: string) => (profiles.get(n) ?? []).length > 0;
    // Under a deployment that is serving, when one is.
    const shown = names.find((n) => has(n) && serving.has(n)) ?? names.find(has);
    if (shown) out.push(...profileViews(shown, profiles.get(shown)!, names));
  }
  return out;
}

export interface SnapshotInputs {
  now: number;
  cluster: string;
  allowActions: boolean;
  /** The latest status read; undefined before the first one answered. */
  status?: ClusterStatus;
  error?: { code: string; message: string };
  events: readonly EventMessage[];
  rates: Readonly<Record<string, number>>;
  series: Readonly<Record<string, SeriesPoint[]>>;
  replicaSeries?: Readonly<Record<string, ReplicaPoint[]>>;
  profiles: ReadonlyMap<string, ModelProfile[]>;
  profileErrors: ReadonlyMap<string, { code: string; message: string }>;
}

export function buildSnapshot(i: SnapshotInputs): DashboardSnapshot {
  const s = i.status;
  const models = s ? s.deployments.map((d) => d.spec.name).sort() : [];
  return {
    v: SNAPSHOT_VERSION,
    at: i.now,
    cluster: s?.cluster ?? i.cluster,
    allowActions: i.allowActions,
    ...optional('error', i.error),
    heads: s ? headsView(s) : { standbys: [] },
    workers: s ? workerViews(s) : [],
    deployments: s
      ? deploymentRows(s, { events: i.events, rates: i.rates, series: i.series, replicaSeries: i.replicaSeries, profiles: i.profiles })
      : [],
    events: eventRows(i.events),
    profiles: s ? profilesByFile(s, i.profiles) : [],
    profileErrors: models.flatMap((m) => {
      const e = i.profileErrors.get(m);
      return e ? [{ model: m, ...e }] : [];
    }),
  };
}

/** The sizes any replica tuned its batches down to on its traffic, distinct, smallest first (undefined: none). */
function tunedSizes(replicas: ReplicaRow[]): number[] | undefined {
  const sizes = [...new Set(replicas.flatMap((r) => r.tunedBatchSizes ?? []))].sort((a, b) => a - b);
  return sizes.length ? sizes : undefined;
}
