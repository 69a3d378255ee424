// Pure helpers of `pnpm bench`: issue 13's targets, checked against one run, and how far each can
// be reached on this machine at all. No I/O.
//
// The bound: a server on the replica's one core that reads its requests with nats.js pays, per
// item, at least the model's least CPU per item at any batch size (the in-process sweep, (2)) and
// what the empty responder of (3) spends per request (the socket reads, nats.js's parser, the
// reply's write: it does nothing else). So it serves at most 1e6 / (model + responder) items/s,
// and Flotilla ÷ a peer is at most that rate ÷ the peer's, the ceiling ratio at most that ÷ (2).
// At concurrency 1 a request takes at least a raw NATS round trip besides its run, so c=1 +ms is
// at least raw NATS's p50 at concurrency 1. Where a bound is under its goal, no server on this
// core could meet the target: the bench says so instead of calling it a miss.
import type { PeerName } from './peer-report.js';
import { PEER_NAMES, PEER_TITLES } from './peer-report.js';
import { fmt, round, rowWithin } from './stats.js';
import { driftFlagged, driftText } from './host-drift.js';

/** Issue 13's targets. */
export const TARGETS = {
  /** best(4) ÷ (2) on every compute-bound model, at least. */
  ceiling: 0.7,
  /** best(4) ÷ in-process at the profile's chosen batch, on every compute-bound model, at least. */
  ceilingAtChosen: 0.85,
  /** best(4) ÷ (3) on a model the broker bounds (the MLP), at least. */
  broker: 0.8,
  /** p50 added at concurrency 1 over in-process, on a model the broker bounds, ms, at most. */
  c1AddedMs: 0.3,
  /** Flotilla's items/s ÷ each peer's, on every model, at least. */
  vs: { moleculer: 1.5, triton: 1.5, rayServe: 3 } satisfies Record<PeerName, number>,
  /** Flotilla's p99 ÷ each peer's at the same concurrency, at most. */
  p99Vs: 1,
  /** A large body direct through a replica, MB/s per direction, at least. */
  bodyMBps: 300,
} as const;

export interface BoundInputs {
  /** The in-process sweep: items/s per batch size, with its own CPU µs per item where measured. */
  sweep: readonly { batch: number; itemsPerSec: number; cpuUsPerItem?: number }[];
  /** (2): the sweep's best items/s. */
  inprocBest: number;
  /** The replica's chosen max batch size: the @chosen ratio's bound is taken at the sweep's largest size within it. */
  chosenBatch?: number;
  /** The empty responder's CPU per request answered in (3), µs (undefined where /proc cannot be read). */
  responderUsPerMsg?: number;
  /** p50 of raw NATS request/reply at concurrency 1, ms. */
  rawC1P50Ms?: number;
  /** Each peer's items/s (absent: not measured). */
  peers: Partial<Record<PeerName, number>>;
}

export interface Bounds {
  /** The model's least CPU per item over the sweep, µs. */
  modelUsPerItem: number;
  responderUsPerMsg: number;
  /** The most a one-core nats.js server could serve: 1e6 / (model + responder) items/s. */
  itemsPerSec: number;
  /** That ÷ (2): the most the ceiling ratio could be. */
  ceiling: number;
  /**
   * The most the @chosen ratio could be: a server at the chosen batch size paying the model's CPU
   * per item there plus the responder's, ÷ the sweep's rate there (null: no chosen size).
   */
  atChosen: number | null;
  /** That ÷ each peer's items/s: the most Flotilla ÷ peer could be (null: peer not measured). */
  vs: Record<PeerName, number | null>;
  /** The least c=1 +ms could be: raw NATS's p50 at concurrency 1 (null: not measured). */
  c1AddedMs: number | null;
  /**
   * The most Flotilla ÷ each peer could be, from ratios measured in turns (pairedVsBounds; absent
   * where the turns measured none): what a paired peer ratio is checked against.
   */
  pairedVs?: Record<PeerName, number | null>;
}

type SweepRow = BoundInputs['sweep'][number];

/** A sweep row's CPU per item, µs: its own where measured, else its rate's reciprocal (Infinity for no rate). */
function usPerItem(r: SweepRow): number {
  return r.cpuUsPerItem ?? (r.itemsPerSec > 0 ? 1e6 / r.itemsPerSec : Infinity);
}

/** The sweep's row the chosen batch size runs at: the largest measured size within it (undefined: none, or no chosen size). */
function chosenRow(sweep: readonly SweepRow[], chosenBatch: number | undefined): SweepRow | undefined {
  return chosenBatch === undefined
    ? undefined
    : rowWithin(
        sweep.filter((r) => r.itemsPerSec > 0),
        chosenBatch,
      );
}

/** `f` of each peer's positive figure, to 3 decimals; null for a peer with none. */
function perPeer(figures: Partial<Record<PeerName, number | null>>, f: (x: number) => number): Record<PeerName, number | null> {
  return Object.fromEntries(
    PEER_NAMES.map((p) => {
      const x = figures[p];
      return [p, x !== undefined && x !== null && x > 0 ? round(f(x), 3) : null];
    }),
  ) as Record<PeerName, number | null>;
}

/** The bounds of one model's run; null without the responder's CPU or a usable sweep. */
export function bounds(i: BoundInputs): Bounds | null {
  const perItem = i.sweep.map(usPerItem).filter((x) => Number.isFinite(x) && x > 0);
  if (!perItem.length || i.responderUsPerMsg === undefined || !(i.responderUsPerMsg >= 0) || !(i.inprocBest > 0)) return null;
  const modelUsPerItem = Math.min(...perItem);
  const itemsPerSec = 1e6 / (modelUsPerItem + i.responderUsPerMsg);
  const vs = perPeer(i.peers, (r) => itemsPerSec / r);
  const chosen = chosenRow(i.sweep, i.chosenBatch);
  const chosenUs = chosen ? usPerItem(chosen) : Infinity;
  const atChosen = chosen && Number.isFinite(chosenUs) ? round(1e6 / (chosenUs + i.responderUsPerMsg) / chosen.itemsPerSec, 3) : null;
  return {
    modelUsPerItem: round(modelUsPerItem, 1),
    responderUsPerMsg: round(i.responderUsPerMsg, 1),
    itemsPerSec: round(itemsPerSec, 1),
    ceiling: round(itemsPerSec / i.inprocBest, 3),
    atChosen,
    vs,
    c1AddedMs: i.rawC1P50Ms === undefined ? null : round(i.rawC1P50Ms, 3),
  };
}

/** What pairedVsBounds takes: one model's bounds and the ratios its turns measured. */
export interface PairedBoundInputs {
  bounds: Bounds;
  /** The in-process sweep's items/s at the batch size the probe ran (the paired @chosen's reference). */
  sweepAtProbe: number;
  /** The cluster ÷ the in-process model at that batch, in turns (paired.ts `atChosen`; null: not measured). */
  atChosen: number | null;
  /** Flotilla ÷ each peer, in turns (null or absent: not measured). */
  vs: Partial<Record<PeerName, number | null>>;
}

/**
 * Flotilla ÷ each peer's bound from ratios measured in turns, so that a paired ratio is checked
 * against a bound taken at the same pace as itself. The one-run bound divides the bound's rate (the
 * sweep's and raw NATS's phases) by the peer's own run, minutes away: on 2026-12-01 a Moleculer run
 * on a slow stretch put conv-classifier's bound at 1.73 where the turns measured Flotilla ÷
 * Moleculer at 1.23 and Moleculer a quarter faster than in its run. Here each factor compares
 * figures taken together: the bound ÷ the sweep's rate at the probe's batch (both at the sweep's
 * pace), over the paired @chosen (the cluster ÷ the probe, in turns), is the bound ÷ the cluster;
 * times the paired Flotilla ÷ peer, the bound ÷ the peer. It holds where the cluster keeps the same
 * share of what the bound allows from the probe's turns to the peer's. Null without a paired
 * @chosen or a usable sweep rate.
 */
export function pairedVsBounds(i: PairedBoundInputs): Record<PeerName, number | null> | null {
  if (i.atChosen === null || !(i.atChosen > 0) || !(i.sweepAtProbe > 0)) return null;
  const boundOverCluster = i.bounds.itemsPerSec / i.sweepAtProbe / i.atChosen;
  return perPeer(i.vs, (r) => boundOverCluster * r);
}

/** What one target came to: met, missed (a server on this core could have met it), or out of reach here. */
export interface TargetCheck {
  target: string;
  /** 'min': the measured figure must be at least the goal; 'max': at most. */
  sense: 'min' | 'max';
  goal: number;
  measured: number | null;
  /** The best any server could do here (null: no bound known). */
  bound: number | null;
  status: 'met' | 'missed' | 'out of reach here' | 'not measured';
  /** How much faster (+) or slower (−) the host ran in the phase measured than in the one it is divided by (host-drift.ts). */
  drift?: number;
  /**
   * Measured in turns with the in-process model (paired.ts): `measured` is the paired ratio and
   * this the one from the cluster's run over the sweep, minutes apart.
   */
  unpaired?: number | null;
}

export interface CheckInputs {
  ratios: {
    ceiling_ratio: number | null;
    ceiling_at_chosen: number | null;
    c1_added_ms: number | null;
    broker_ratio: number | null;
  };
  /** Flotilla ÷ each peer (items and p99); null figures where the peer did not run. */
  peers: Record<PeerName, { items: number | null; p99: number | null }>;
  bounds: Bounds | null;
  /**
   * Whether the model is compute-bound (its in-process best is under raw NATS's msgs/s): the
   * ceiling targets are for those; the broker and c=1 targets for the others (the MLP).
   */
  computeBound: boolean;
  /** The host's change of speed between the phases each ratio compares (host-drift.ts): the ceilings (cluster ÷ sweep), broker (cluster ÷ raw NATS), each peer (cluster ÷ peer). */
  drift?: { ceiling?: number; broker?: number; vs?: Partial<Record<PeerName, number>> };
  /**
   * The ceilings measured in turns with the in-process model, the broker ratio in turns with raw
   * NATS, and Flotilla ÷ each peer in turns with that peer (paired.ts): where present they are what
   * those targets check (the host's drift between phases does not enter them).
   */
  paired?: { ceiling: number | null; atChosen: number | null; broker?: number | null; vs?: Partial<Record<PeerName, number | null>> };
}

/**
 * A 'min' bound as a figure measured apart from it may be checked against: none where the figure is
 * above it (the bound came from phases run at another speed of the host, so it says nothing here).
 */
function boundBelow(measured: number, bound: number | null): number | null {
  return bound !== null && measured > bound ? null : bound;
}

function check(target: string, sense: 'min' | 'max', goal: number, measured: number | null, bound: number | null): TargetCheck {
  const ok = (x: number) => (sense === 'min' ? x >= goal : x <= goal);
  const status = measured === null ? 'not measured' : ok(measured) ? 'met' : bound !== null && !ok(bound) ? 'out of reach here' : 'missed';
  return { target, sense, goal, measured, bound, status };
}

/** Every target that applies to one model's run, with its status. */
export function checkTargets(i: CheckInputs): TargetCheck[] {
  const b = i.bounds;
  const out: TargetCheck[] = [];
  const d = i.drift;
  const drifted = (c: TargetCheck, drift: number | undefined): TargetCheck => (drift === undefined ? c : { ...c, drift });
  // A 'min' target from its paired figure where the turns measured one (the one-run figure beside
  // it), else from the one run with the host's drift between its phases. A bound the paired figure
  // is above came from figures measured at another speed of the host: it is left out.
  const minTarget = (
    target: string,
    goal: number,
    oneRun: number | null,
    paired: number | null | undefined,
    bound: number | null,
    drift: number | undefined,
  ): TargetCheck => {
    if (paired === null || paired === undefined) return drifted(check(target, 'min', goal, oneRun, bound), drift);
    return { ...check(target, 'min', goal, paired, boundBelow(paired, bound)), unpaired: oneRun };
  };
  if (i.computeBound) {
    out.push(minTarget('ceiling', TARGETS.ceiling, i.ratios.ceiling_ratio, i.paired?.ceiling, b?.ceiling ?? null, d?.ceiling));
    out.push(
      minTarget('@chosen', TARGETS.ceilingAtChosen, i.ratios.ceiling_at_chosen, i.paired?.atChosen, b?.atChosen ?? null, d?.ceiling),
    );
  } else {
    out.push(minTarget('broker', TARGETS.broker, i.ratios.broker_ratio, i.paired?.broker, null, d?.broker));
    out.push(check('c=1 +ms', 'max', TARGETS.c1AddedMs, i.ratios.c1_added_ms, b?.c1AddedMs ?? null));
  }
  for (const p of PEER_NAMES) {
    const r = i.peers[p];
    if (r.items === null) continue;
    // A paired ratio against the bound from the same turns where there is one (pairedVsBounds).
    const paired = i.paired?.vs?.[p];
    const bound = (paired !== null && paired !== undefined ? b?.pairedVs?.[p] : undefined) ?? b?.vs[p] ?? null;
    out.push(minTarget(`÷ ${PEER_TITLES[p]}`, TARGETS.vs[p], r.items, paired, bound, d?.vs?.[p]));
    out.push(check(`p99 ÷ ${PEER_TITLES[p]}`, 'max', TARGETS.p99Vs, r.p99, null));
  }
  return out;
}

/** `host +12 %` where the host's speed moved more than DRIFT_FLAG between the phases a check compares; `paired, one run 0.68` for a paired ratio. */
function checkNote(c: TargetCheck): string | undefined {
  if (c.unpaired !== undefined) return `paired; one run ${c.unpaired === null ? '-' : fmt(c.unpaired)}`;
  return driftFlagged(c.drift) ? driftText(c.drift!) : undefined;
}

/** "÷ Moleculer 1.16 < 1.5 (at most 1.43 here)": a target that was not met, for the text. */
export function checkText(c: TargetCheck): string {
  const rel = c.sense === 'min' ? '<' : '>';
  const drift = checkNote(c);
  const notes = [
    ...(c.bound === null ? [] : [`${c.sense === 'min' ? 'at most' : 'at least'} ${fmt(c.bound)} here`]),
    ...(drift ? [drift] : []),
  ];
  return `${c.target} ${fmt(c.measured)} ${rel} ${c.goal}${notes.length ? ` (${notes.join('; ')})` : ''}`;
}

/** One line per model: targets met, missed, and out of reach `where` (the replica's core; the bodies: the machine). */
export function targetsLine(checks: readonly TargetCheck[], where = 'on this core'): string {
  const met = checks
    .filter((c) => c.status === 'met')
    .map((c) => {
      const note = checkNote(c);
      return note ? `${c.target} (${note})` : c.target;
    });
  const missed = checks.filter((c) => c.status === 'missed').map(checkText);
  const out = checks.filter((c) => c.status === 'out of reach here').map(checkText);
  const parts = [`met ${met.length ? met.join(', ') : 'none'}`];
  if (missed.length) parts.push(`missed ${missed.join('; ')}`);
  if (out.length) parts.push(`out of reach ${where} ${out.join('; ')}`);
  return parts.join(' | ');
}

/** Raw NATS moving one body size over the same broker: its request and reply rates, MB/s. */
export interface RawBodyRates {
  requestMBps: number;
  replyMBps: number;
}

/**
 * One body size's target: its round trip direct through a replica, MB/s per direction (the body
 * over half the round trip), at least TARGETS.bodyMBps. The bound is raw NATS moving the same bytes
 * there and back between two processes (bodies.ts): the body over the mean of its two directions'
 * times, the harmonic mean of their rates. No server moves a body through NATS faster than the
 * broker and nats.js move its bytes, so where that is under the goal the target is out of reach on
 * this machine. A figure above its bound (measured minutes apart, unpinned) leaves the bound out.
 */
export function checkBody(sizeMiB: number, directMBps: number | null, raw: RawBodyRates | null): TargetCheck {
  const bound = raw && raw.requestMBps > 0 && raw.replyMBps > 0 ? round(2 / (1 / raw.requestMBps + 1 / raw.replyMBps), 1) : null;
  return check(`${sizeMiB} MiB body`, 'min', TARGETS.bodyMBps, directMBps, directMBps === null ? bound : boundBelow(directMBps, bound));
}

/** Where the @chosen ratio went: three factors whose product it is (up to the wall clock against CPU time). */
export interface ChosenLoss {
  /** The worker's CPU over the run ÷ its duration: its core's share kept busy (1: never idle). */
  busy: number;
  /**
   * The model's CPU per item in-process at the chosen size ÷ at the sizes the replica ran (the run's
   * batch histogram): under 1 where the batches served were smaller than chosen (a closed loop of
   * callers at about the chosen size splits into groups that take turns) or cost more per item.
   */
  batches: number;
  /** The model's share of the worker's CPU per item (the rest: reading, decoding, copies, replies, GC, a slower run). */
  perRequest: number;
  /** That share with nothing besides the model but the empty responder's CPU per request: what the bound assumes. */
  perRequestFloor: number;
  /** busy × batches × perRequest. */
  product: number;
}

export interface ChosenLossInputs {
  sweep: BoundInputs['sweep'];
  chosenBatch?: number;
  /** The worker at the best point: busy, and its CPU per item split into the model at the served sizes and the rest. */
  worker?: { busy: number; modelUsPerItem?: number; otherUsPerItem?: number };
  responderUsPerMsg?: number;
}

/**
 * The @chosen ratio as busy × batches × perRequest, each a ratio of what the run measured (see
 * ChosenLoss), so a missed target says which of the three fell short; null where the worker's CPU,
 * its split or a CPU figure at the chosen size is missing.
 */
export function chosenLoss(i: ChosenLossInputs): ChosenLoss | null {
  const w = i.worker;
  if (!w || w.modelUsPerItem === undefined || w.otherUsPerItem === undefined) return null;
  if (!(w.modelUsPerItem > 0) || !(w.busy > 0)) return null;
  const chosen = chosenRow(i.sweep, i.chosenBatch);
  const chosenUs = chosen ? usPerItem(chosen) : Infinity;
  if (!Number.isFinite(chosenUs) || !(chosenUs > 0)) return null;
  const batches = chosenUs / w.modelUsPerItem;
  const perRequest = w.modelUsPerItem / (w.modelUsPerItem + Math.max(0, w.otherUsPerItem));
  const floor = i.responderUsPerMsg === undefined ? 1 : w.modelUsPerItem / (w.modelUsPerItem + i.responderUsPerMsg);
  return {
    busy: round(w.busy, 3),
    batches: round(batches, 3),
    perRequest: round(perRequest, 3),
    perRequestFloor: round(floor, 3),
    product: round(w.busy * batches * perRequest, 3),
  };
}

/** "where @chosen went: busy 0.958 × batches served ÷ chosen 0.913 × the model's share of the worker's CPU 0.828 (…) = 0.724 (measured 0.726)". */
export function chosenLossText(l: ChosenLoss, measured: number | null): string {
  return (
    `where @chosen went: busy ${fmt(l.busy)} × batches served ÷ chosen ${fmt(l.batches)} × the model's share of the worker's CPU ${fmt(l.perRequest)} ` +
    `(${fmt(l.perRequestFloor)} with only the empty responder's work besides) = ${fmt(l.product)} (measured ${fmt(measured)})`
  );
}
