// Pure helpers for the peers of `pnpm bench` (peers.ts runs them): which peers BENCH_PEERS asks
// for, the ratios Flotilla ÷ peer (items/s and p99 at the same concurrency), and their rows in the
// per-model table and the summary. No I/O.
import type { LoadedReplicaState } from '@flotilla/client';
import { fmt, round } from './stats.js';

/** The peers, in the order they run and print. */
export const PEER_NAMES = ['moleculer', 'triton', 'rayServe'] as const;
export type PeerName = (typeof PEER_NAMES)[number];

/** What BENCH_PEERS may name (`ray` for Ray Serve). */
const PEER_ALIASES: Record<string, PeerName> = { moleculer: 'moleculer', triton: 'triton', ray: 'rayServe', rayserve: 'rayServe' };

/** A peer's result: its run, or why it was not measured (`skipped`) or failed (`error`). */
export type PeerOutcome<T> = T | { skipped: string } | { error: string };

/** What every peer run reports (each adds its own details). */
export interface PeerRunBase {
  itemsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  concurrency: number;
}

/**
 * The peers to run, each with the reason it is not run: BENCH_PEERS unset, `1` or `all` runs all
 * three; `0` or `false` none; a comma-separated list (`moleculer,triton,ray`) only those. Throws for
 * a name it does not know.
 */
export function peerSelection(env: Record<string, string | undefined>): Record<PeerName, { run: true } | { skipped: string }> {
  const raw = (env.BENCH_PEERS ?? '').trim().toLowerCase();
  const all = (v: { run: true } | { skipped: string }) => Object.fromEntries(PEER_NAMES.map((p) => [p, v])) as Record<PeerName, typeof v>;
  if (raw === '' || raw === '1' || raw === 'all' || raw === 'true') return all({ run: true });
  if (raw === '0' || raw === 'false' || raw === 'none') return all({ skipped: 'BENCH_PEERS=0' });
  const named = new Set<PeerName>();
  for (const s of raw.split(',').map((x) => x.trim().replace(/[\s-]/g, ''))) {
    if (!s) continue;
    const p = PEER_ALIASES[s];
    if (!p) throw new Error(`BENCH_PEERS: unknown peer '${s}' (have moleculer, triton, ray; or 0 / all)`);
    named.add(p);
  }
  const out = all({ skipped: `not in BENCH_PEERS=${env.BENCH_PEERS}` });
  for (const p of named) out[p] = { run: true };
  return out;
}

/**
 * The batching the batching peers (Triton, Ray Serve) get: what Flotilla's replica runs with, and
 * for a model profiled per input shape, the batching of its most requested profiled shape (the one
 * the bench sent), which the replica's top-level batching does not show. What the deployment set
 * (BENCH_BATCHING) wins over a shape's profile, as it does in the replica.
 */
export function peerBatching(
  replica: Pick<LoadedReplicaState, 'batching' | 'profile'> | undefined,
  deployment: { maxBatchSize?: number; maxQueueDelayMs?: number } = {},
): {
  maxBatchSize: number;
  batchWaitMs: number;
  from: string;
} {
  const shapes = (replica?.profile?.shapes ?? []).filter((s) => s.maxBatchSize !== undefined);
  const top = shapes.reduce<(typeof shapes)[number] | undefined>((a, b) => (!a || b.requests > a.requests ? b : a), undefined);
  if (top && deployment.maxBatchSize === undefined)
    return {
      maxBatchSize: top.maxBatchSize!,
      batchWaitMs: deployment.maxQueueDelayMs ?? top.maxQueueDelayMs ?? 0,
      from: `shape ${top.shape}`,
    };
  return {
    maxBatchSize: Math.max(1, replica?.batching.maxBatchSize ?? 1),
    batchWaitMs: replica?.batching.maxQueueDelayMs ?? 0,
    from: 'replica',
  };
}

export interface PeerRatio {
  /** Flotilla's items/s ÷ the peer's (> 1: Flotilla serves more). */
  items: number | null;
  /** Flotilla's p99 ÷ the peer's at the same concurrency (< 1: Flotilla's tail is shorter). */
  p99: number | null;
}

/** Flotilla ÷ peer for one peer outcome; nulls when the peer has no run (or no figure). */
export function peerRatio(flotilla: { itemsPerSec: number; p99Ms: number }, peer: PeerOutcome<PeerRunBase> | undefined): PeerRatio {
  if (!peer || !('itemsPerSec' in peer)) return { items: null, p99: null };
  return {
    items: peer.itemsPerSec > 0 ? round(flotilla.itemsPerSec / peer.itemsPerSec, 3) : null,
    p99: peer.p99Ms ? round(flotilla.p99Ms / peer.p99Ms, 3) : null,
  };
}

/** The peers' ratios as flat JSON fields: vs_moleculer, p99_vs_moleculer, vs_triton, …, vs_ray_serve. */
export function peerRatioFields(ratios: Record<PeerName, PeerRatio>): Record<string, number | null> {
  const key = (p: PeerName) => (p === 'rayServe' ? 'ray_serve' : p);
  const out: Record<string, number | null> = {};
  for (const p of PEER_NAMES) {
    out[`vs_${key(p)}`] = ratios[p].items;
    out[`p99_vs_${key(p)}`] = ratios[p].p99;
  }
  return out;
}

/** Display names, as the tables print them. */
export const PEER_TITLES: Record<PeerName, string> = { moleculer: 'Moleculer', triton: 'Triton', rayServe: 'Ray Serve' };

/** "1.21× (p99 0.80)", or '-' without a run. */
export function ratioText(r: PeerRatio): string {
  return r.items === null ? '-' : `${fmt(r.items)}×${r.p99 === null ? '' : ` (p99 ${fmt(r.p99)})`}`;
}

/** One line under a model's table: every peer's ratio, or why it has none. */
export function peerRatioLine(ratios: Record<PeerName, PeerRatio>, outcomes: Record<PeerName, PeerOutcome<PeerRunBase>>): string {
  const parts = PEER_NAMES.map((p, i) => {
    const o = outcomes[p];
    const what = `vs ${PEER_TITLES[p]} (5${'abc'[i]})`;
    if ('skipped' in o) return `${what}: skipped`;
    if ('error' in o) return `${what}: error`;
    return `${what} ${ratioText(ratios[p])}`;
  });
  return `   Flotilla best(4) ÷ peer, items/s (and p99 at the same concurrency; < 1 = shorter tail): ${parts.join('   ')}`;
}

/**
 * A model-table row for one peer: label, items/s, p50, p99, mean batch, notes (the 6 columns of
 * main.ts's table). `describe` gives the label's version and the notes for a run.
 */
export function peerRow<T extends PeerRunBase & { meanBatch?: number }>(
  index: number,
  name: PeerName,
  outcome: PeerOutcome<T>,
  describe: (run: T) => { version: string; notes: string },
): string[] {
  const label = `(5${'abc'[index]}) ${PEER_TITLES[name]}`;
  if ('skipped' in outcome) return [label, '-', '-', '-', '-', `skipped: ${outcome.skipped}`];
  if ('error' in outcome) return [label, '-', '-', '-', '-', `error: ${outcome.error.replace(/\s+/g, ' ').slice(0, 200)}`];
  const d = describe(outcome);
  return [
    `${label} ${d.version}, c=${outcome.concurrency}`,
    fmt(outcome.itemsPerSec),
    fmt(outcome.p50Ms),
    fmt(outcome.p99Ms),
    outcome.meanBatch === undefined ? '1' : fmt(outcome.meanBatch),
    d.notes,
  ];
}
