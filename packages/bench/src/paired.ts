// The cluster against the in-process model, measured in turns, pure. The bench's @chosen ratio
// divides the cluster's run by the in-process sweep's rate at the chosen batch size, measured a
// minute or more earlier, and this VM's speed moved by a third within seconds (2026-12-01, Intel
// Xeon: the probe read wide-mlp at batch 16 at 5,644 items/s just before the cluster's runs and
// 7,565 just after; a pinned in-process loop moved ±10 % from one 0.7 s stretch to the next). So
// after its runs the bench measures the best concurrency again in PAIRED_ROUNDS short windows and
// times the model in-process (the host-speed probe, same core, same batch size, the replica idle)
// before the first and after each: each window's rate over the mean of the two probes around it is
// one round's ratio, and the median round is the paired @chosen. The ceiling against the best
// batch at any size follows from it through the sweep's own ratio of those two rates (its rows ran
// interleaved, stats.ts SWEEP_ROUNDS). A model that is not compute-bound (the MLP) is paired with
// raw NATS instead, for its broker ratio: raw NATS windows before the first cluster window and
// after each.
import { percentile } from '@flotilla/loadgen';

/** Windows of the cluster's load, each with its reference measured before and after it. */
export const PAIRED_ROUNDS = 5;
/** The shortest window, ms (a round must hold several of the chosen batches at c=128). */
export const PAIRED_MIN_WINDOW_MS = 300;
/**
 * How long each window's callers run before it counts, ms: every window restarts the load from an
 * idle replica, and 128 callers arriving at once first split into batches that take turns (the
 * first window of a wide-mlp run served 2,265 items/s, the next ones 4,137–4,594, against 6,326 in
 * the run before them); only the requests answered within the window count (load-child.ts).
 */
export const PAIRED_WARM_MS = 200;

/** One window: the cluster's items/s, and its reference's rate before and after (either may be missing). */
export interface PairedWindow {
  itemsPerSec: number;
  before?: number;
  after?: number;
}

export interface PairedRound extends PairedWindow {
  /** The mean of the reference's rates around this window. */
  reference?: number;
  /** itemsPerSec ÷ reference. */
  ratio?: number;
}

/** Rounds and their median (nearest rank: the lower middle one of an even count); null without a round. */
export interface PairedRounds {
  /** Each window's length, ms. */
  windowMs: number;
  rounds: PairedRound[];
  median: number | null;
  /** The lowest and highest round. */
  min: number | null;
  max: number | null;
}

/** The cluster against the in-process model at the chosen batch size. */
export interface Paired extends PairedRounds {
  /** The batch size the probe ran (the replica's chosen size). */
  batch: number;
  /** The median round: the cluster ÷ the in-process rate at the chosen batch. */
  atChosen: number | null;
  /** atChosen × the sweep's rate at the chosen batch ÷ its best at any (null without either). */
  ceiling: number | null;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const usable = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x) && x > 0;

/**
 * The windows' references are shared: refs[i] ran before window i and refs[i + 1] after it, so
 * n windows take n + 1 (a missing one leaves its neighbours with one, or none).
 */
export function pairWindows(windows: readonly number[], refs: readonly (number | undefined)[]): PairedWindow[] {
  return windows.map((itemsPerSec, i) => ({
    itemsPerSec,
    ...(usable(refs[i]) ? { before: refs[i] } : {}),
    ...(usable(refs[i + 1]) ? { after: refs[i + 1] } : {}),
  }));
}

/** Each window over the mean of its references, and the median round. */
export function pairedRounds(windowMs: number, windows: readonly PairedWindow[]): PairedRounds {
  const rounds: PairedRound[] = windows.map((w) => {
    const refs = [w.before, w.after].filter(usable);
    if (!refs.length || !usable(w.itemsPerSec)) return { ...w };
    const reference = refs.reduce((a, b) => a + b, 0) / refs.length;
    return { ...w, reference: Math.round(reference * 10) / 10, ratio: round3(w.itemsPerSec / reference) };
  });
  const ratios = rounds.flatMap((r) => (r.ratio === undefined ? [] : [r.ratio]));
  const sorted = [...ratios].sort((a, b) => a - b);
  return {
    windowMs,
    rounds,
    median: sorted.length ? round3(percentile(sorted, 50)) : null,
    min: sorted.length ? sorted[0]! : null,
    max: sorted.length ? sorted[sorted.length - 1]! : null,
  };
}

/** The cluster over the in-process model (the probe) at `batch`, and the ceiling from it. */
export function paired(
  batch: number,
  windowMs: number,
  windows: readonly PairedWindow[],
  sweep: { atChosen?: number; best?: number },
): Paired {
  const r = pairedRounds(windowMs, windows);
  const atChosen = r.median;
  const ceiling =
    atChosen !== null && usable(sweep.atChosen) && usable(sweep.best) ? round3((atChosen * sweep.atChosen) / sweep.best) : null;
  return { ...r, batch, atChosen, ceiling };
}

/** `(rounds 0.774 0.867 …)`. */
function roundsText(r: PairedRounds): string {
  return r.rounds.map((x) => (x.ratio === undefined ? '-' : String(x.ratio))).join(' ');
}

function windowsText(r: PairedRounds): string {
  return `${r.rounds.length} window${r.rounds.length === 1 ? '' : 's'} of ${r.windowMs} ms`;
}

/** `<head> (<n> windows of <ms> ms, <how>): <figure> <median> (rounds …)<tail>`, or what was missing. */
function roundsLine(head: string, how: string, figure: string, r: PairedRounds, missing: string, tail = ''): string {
  const h = `${head} (${windowsText(r)}${how})`;
  return r.median === null ? `${h}: ${missing}` : `${h}: ${figure} ${r.median} (rounds ${roundsText(r)})${tail}`;
}

/** One line for the bench's text. */
export function pairedLine(p: Paired): string {
  return roundsLine(
    `paired with the in-process model at batch ${p.batch}`,
    ', timed in-process before and after each',
    '@chosen',
    p,
    'no round had a probe',
    `, ceiling ${p.ceiling ?? '-'}`,
  );
}

/** The broker ratio measured in turns: cluster windows with raw NATS windows before and after each. */
export function pairedBrokerLine(p: PairedRounds): string {
  return roundsLine('paired with raw NATS', ', raw NATS before and after each', 'broker', p, 'no round had a raw window');
}

/** Flotilla ÷ a peer measured in turns: Flotilla's windows with the peer's before and after each. */
export function pairedPeerLine(peer: string, p: PairedRounds): string {
  return roundsLine(
    'paired with Flotilla',
    ` of Flotilla's, ${peer}'s before and after each`,
    `Flotilla ÷ ${peer}`,
    p,
    `no round had a window of ${peer}'s`,
  );
}
