// `flotilla status` for people: the cluster's tables, and `status --watch`'s frames (a redrawn
// screen on a terminal, timestamped snapshots in a pipe or a log). Pure: a status and a clock in,
// text out; the command's loop (status-watch.ts) does the waiting and writing.
import type { ClusterStatus, DeploymentStatus, HeadStatus } from '@flotilla/protocol';
import { BadRequestError, tunedBelow } from '@flotilla/protocol';
import { formatBytes, table } from './format.js';

/** `status --watch` refresh period, ms. */
export const DEFAULT_WATCH_INTERVAL_MS = 1000;
/** Shortest refresh period, ms: each refresh is a control request to the head. */
export const MIN_WATCH_INTERVAL_MS = 100;

/** Cursor home + clear screen (redraw in place); hide / show the cursor while watching. */
export const CLEAR_SCREEN = '\x1b[H\x1b[2J';
export const HIDE_CURSOR = '\x1b[?25l';
export const SHOW_CURSOR = '\x1b[?25h';

export function deploymentRows(ds: DeploymentStatus[]): string {
  return table(
    ['NAME', 'READY', 'DEVICE', 'SIZE', 'REPLICAS (worker/device/state)', 'PENDING'],
    ds.map((d) => [
      d.spec.name,
      `${d.ready}/${d.spec.replicas}`,
      d.spec.device,
      formatBytes(d.spec.sizeBytes),
      d.replicas.map((r) => `${r.workerId}/${r.device}/${r.state}`).join(' ') || '-',
      d.pendingReason ? `${d.pendingReason.code}: ${d.pendingReason.message}` : '',
    ]),
  );
}

/** A duration for people: `850 ms`, `12.3 s`, `4 min 5 s`, `3 h 2 min`. */
export function formatAge(ms: number): string {
  const t = Math.max(0, ms);
  if (t < 1000) return `${Math.round(t)} ms`;
  if (t < 60_000) return `${(t / 1000).toFixed(1)} s`;
  if (t < 3_600_000) return `${Math.floor(t / 60_000)} min ${Math.floor((t % 60_000) / 1000)} s`;
  return `${Math.floor(t / 3_600_000)} h ${Math.floor((t % 3_600_000) / 60_000)} min`;
}

/** The heads the leader knows (itself and the standbys it heard lately); `now` on the caller's clock. */
export function headRows(heads: readonly HeadStatus[], now: number): string {
  return table(
    ['HEAD', 'ROLE', 'PID', 'HOST', 'IN ROLE FOR', 'LAST SEEN'],
    heads.map((h) => [h.id, h.role, h.pid, h.host, formatAge(now - h.since), `${formatAge(now - h.lastSeenAt)} ago`]),
  );
}

export function statusText(s: ClusterStatus, now: number = Date.now()): string {
  const workers = table(
    ['WORKER', 'PID', 'STATE', 'DEVICE', 'PROVIDER', 'USED/BUDGET', 'CAPACITY', 'MODELS'],
    s.workers.flatMap((w) =>
      w.devices.map((d) => [
        w.id,
        w.pid,
        w.alive ? w.state : 'dead',
        d.id,
        d.executionProvider,
        `${formatBytes(d.usedBytes)}/${formatBytes(d.budgetBytes)}`,
        formatBytes(d.capacityBytes),
        d.models.map((m) => m.name).join(',') || '-',
      ]),
    ),
  );
  const replicas = table(
    ['REPLICA', 'MODEL', 'WORKER', 'DEVICE', 'STATE', 'QUEUE', 'DONE', 'FAILED', 'P50/P99 MS', 'BATCH (max/delay ms)', 'BATCH SIZES'],
    s.workers.flatMap((w) =>
      w.replicas.map((r) => [
        r.id,
        r.model,
        w.id,
        // A session on a thread of its own says so; one on the event loop (auto's choice for short runs) does not.
        r.state !== 'loading' && r.sessionHost === 'thread' ? `${r.device} thread` : r.device,
        r.state,
        r.queueDepth,
        r.processed,
        r.failed,
        // The replica's recent successful requests (heartbeat `latencyMs`): none lately is `-`.
        r.state !== 'loading' && r.latencyMs ? `${formatMs(r.latencyMs.p50)}/${formatMs(r.latencyMs.p99)}` : '-',
        r.state === 'loading'
          ? '-'
          : `${r.batching.maxBatchSize}/${r.batching.maxQueueDelayMs}${r.batching.padTo ? ' pad' : ''}${tunedText(r.tunedBatches)}`,
        (r.state !== 'loading' &&
          Object.entries(r.batchHistogram)
            .map(([k, v]) => `${k}:${v}`)
            .join(' ')) ||
          '-',
      ]),
    ),
  );
  // A head older than the `heads` field names only itself (the line above).
  const heads = s.heads?.length ? `${headRows(s.heads, now)}\n\n` : '';
  const settling =
    s.head.settlingUntil !== undefined && s.head.settlingUntil > now
      ? `; placement held ${formatAge(s.head.settlingUntil - now)} more after taking the lead` +
        (s.head.awaitingWorkers?.length ? `, awaiting ${s.head.awaitingWorkers.join(', ')}` : '')
      : '';
  return `cluster ${s.cluster} (head ${s.head.id ?? '-'}, pid ${s.head.pid}${settling})\n\n${heads}${workers}\n\n${replicas}\n\n${deploymentRows(s.deployments)}\n`;
}

/**
 * What the replica's batch-size tuner changed, for the BATCH column: ` tuned 8` (the sizes its
 * batch keys now run at where that is below where they started, smallest first), `` when it changed
 * none (or tunes none).
 */
export function tunedText(tuned: ReadonlyArray<{ from: number; maxBatchSize: number }> | undefined): string {
  const sizes = tunedBelow(tuned);
  return sizes.length ? ` tuned ${sizes.join(',')}` : '';
}

/** Latency for the replica table: 3 significant digits (`0.412`, `7.25`, `31.2`), whole ms from 100. */
export function formatMs(ms: number): string {
  return ms >= 100 ? String(Math.round(ms)) : String(Number(ms.toPrecision(3)));
}

/** `--interval MS`: a whole number of milliseconds, at least MIN_WATCH_INTERVAL_MS. */
export function parseWatchInterval(text: string | undefined): number {
  if (text === undefined) return DEFAULT_WATCH_INTERVAL_MS;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < MIN_WATCH_INTERVAL_MS)
    throw new BadRequestError(`--interval ${text}: a whole number of milliseconds, at least ${MIN_WATCH_INTERVAL_MS}`);
  return ms;
}

/** What one refresh got: the status, or the error that refresh ended with (the watch goes on). */
export type WatchSnapshot = { status: ClusterStatus } | { error: { code: string; message: string } };

export interface FrameOptions {
  /** Whether stdout is a terminal: redraw in place, else append a timestamped snapshot. */
  tty: boolean;
  /** When the snapshot was taken, ms since the epoch. */
  at: number;
  intervalMs: number;
  /** Terminal size (TTY only): lines are cut to the width and the frame to the height, so a redraw never scrolls. */
  columns?: number;
  rows?: number;
}

/** A line summing the cluster up: `2/2 workers alive, 3 deployments (2 ready), 5 replicas, 12 queued`. */
export function statusSummary(s: ClusterStatus): string {
  const alive = s.workers.filter((w) => w.alive).length;
  const replicas = s.workers.flatMap((w) => w.replicas);
  const queued = replicas.reduce((n, r) => n + r.queueDepth, 0);
  const ready = s.deployments.filter((d) => d.ready >= d.spec.replicas && d.spec.replicas > 0).length;
  return (
    `${alive}/${s.workers.length} workers alive, ${s.deployments.length} deployment${s.deployments.length === 1 ? '' : 's'} ` +
    `(${ready} fully ready), ${replicas.length} replica${replicas.length === 1 ? '' : 's'}, ${queued} queued`
  );
}

/** One frame of `status --watch`: what to write to stdout for this snapshot. */
export function watchFrame(snap: WatchSnapshot, o: FrameOptions): string {
  const body =
    'status' in snap
      ? `${statusSummary(snap.status)}\n\n${statusText(snap.status, o.at)}`
      : `error ${snap.error.code}: ${snap.error.message}\n`;
  const stamp = new Date(o.at).toISOString();
  if (!o.tty) return `--- ${stamp} ---\n${body}\n`;
  const head = `every ${o.intervalMs} ms, updated ${stamp.slice(11, 19)} UTC (Ctrl-C to stop)`;
  let lines = [head, '', ...body.replace(/\n+$/, '').split('\n')];
  // One line short of the height: the frame's last newline must not scroll the first line away.
  const fit = o.rows ? Math.max(2, o.rows - 1) : Infinity;
  if (lines.length > fit) lines = [...lines.slice(0, fit - 1), `… ${lines.length - fit + 1} more lines (a taller terminal shows them)`];
  if (o.columns) lines = lines.map((l) => (l.length > o.columns! ? l.slice(0, Math.max(0, o.columns! - 1)) + '…' : l));
  return CLEAR_SCREEN + lines.join('\n') + '\n';
}
