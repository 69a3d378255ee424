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
// interleaved, stats.ts SWEEP_ROUNDS).
import { percentile } from '@flotilla/loadgen';

/** Windows of the cluster's load, each with the in-process model timed before and after it. */
export const PAIRED_ROUNDS = 5;
/** The shortest window, ms (a round must hold several of the chosen batches at c=128). */
export const PAIRED_MIN_WINDOW_MS = 300;

/** One window: the cluster's items/s, and the probe's before and after (either may be missing). */
export interface PairedWindow {
  itemsPerSec: number;
  before?: number;
  after?: number;
}

export interface PairedRound extends PairedWindow {
  /** The probes' mean: the in-process rate at the chosen batch around this window. */
  inprocItemsPerSec?: number;
  /** itemsPerSec ÷ inprocItemsPerSec. */
  ratio?: number;
}

export interface Paired {
  /** The batch size the probe ran (the replica's chosen size). */
  batch: number;
  /** Each window's length, ms. */
  windowMs: number;
  rounds: PairedRound[];
  /** The median round's ratio (nearest rank): the cluster ÷ the in-process rate at the chosen batch (null without a round). */
  atChosen: number | null;
  /** atChosen × the sweep's rate at the chosen batch ÷ its best at any (null without either). */
  ceiling: number | null;
  /** The lowest and highest round. */
  min: number | null;
  max: number | null;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const usable = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x) && x > 0;

/**
 * The windows' probes are shared: probes[i] ran before window i and probes[i + 1] after it, so
 * n windows take n + 1 probes (a missing one leaves its neighbours with one probe, or none).
 */
export function pairWindows(windows: readonly number[], probes: readonly (number | undefined)[]): PairedWindow[] {
  return windows.map((itemsPerSec, i) => ({
    itemsPerSec,
    ...(usable(probes[i]) ? { before: probes[i] } : {}),
    ...(usable(probes[i + 1]) ? { after: probes[i + 1] } : {}),
  }));
}

/** Each round's ratio, their median, and the ceiling from it. */
export function paired(
  batch: number,
  windowMs: number,
  windows: readonly PairedWindow[],
  sweep: { atChosen?: number; best?: number },
): Paired {
  const rounds: PairedRound[] = windows.map((w) => {
    const probes = [w.before, w.after].filter(usable);
    if (!probes.length || !usable(w.itemsPerSec)) return { ...w };
    const inproc = probes.reduce((a, b) => a + b, 0) / probes.length;
    return { ...w, inprocItemsPerSec: Math.round(inproc * 10) / 10, ratio: round3(w.itemsPerSec / inproc) };
  });
  const ratios = rounds.flatMap((r) => (r.ratio === undefined ? [] : [r.ratio]));
  // The median round (nearest rank: the lower middle one of an even count).
  const atChosen = ratios.length
    ? round3(
        percentile(
          [...ratios].sort((a, b) => a - b),
          50,
        ),
      )
    : null;
  const ceiling =
    atChosen !== null && usable(sweep.atChosen) && usable(sweep.best) ? round3((atChosen * sweep.atChosen) / sweep.best) : null;
  return {
    batch,
    windowMs,
    rounds,
    atChosen,
    ceiling,
    min: ratios.length ? Math.min(...ratios) : null,
    max: ratios.length ? Math.max(...ratios) : null,
  };
}

/** One line for the bench's text. */
export function pairedLine(p: Paired): string {
  const rounds = p.rounds.map((r) => (r.ratio === undefined ? '-' : String(r.ratio))).join(' ');
  const head = `paired with the in-process model at batch ${p.batch} (${p.rounds.length} window${p.rounds.length === 1 ? '' : 's'} of ${p.windowMs} ms, timed in-process before and after each)`;
  if (p.atChosen === null) return `${head}: no round had a probe`;
  return `${head}: @chosen ${p.atChosen} (rounds ${rounds}), ceiling ${p.ceiling ?? '-'}`;
}
