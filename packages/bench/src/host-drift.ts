// How fast the host ran during each phase of one model's bench, pure. The bench's ratios divide
// figures measured minutes apart (the in-process sweep, the cluster's runs, raw NATS, each peer),
// and a shared VM's speed moves within minutes: on 2026-12-01 a pinned CPU loop took 312–486 ms
// from run to run with 20 ms of steal time in /proc/stat over the three (the other tenants of the
// machine slow it, the hypervisor hardly takes the core away). So the bench keeps the model open in a pinned
// child on the replica's core (inproc.js's probe mode) and times it at the chosen batch before and
// after each phase; a ratio whose two phases ran at speeds more than DRIFT_FLAG apart says so
// beside its verdict. The probe measures the model itself, so it moves with the kind of slowdown
// that model suffers (a memory-bound one more under a neighbour's memory traffic).

/** A change of speed between the phases a ratio compares above which its verdict carries a note. */
export const DRIFT_FLAG = 0.1;

/** One phase's probes, items/s (either may be missing: a probe that failed or was not taken). */
export interface PhaseProbes {
  before?: number;
  after?: number;
}

export interface PhaseSpeed extends PhaseProbes {
  /** The mean of its probes (absent when it has none). */
  itemsPerSec?: number;
  /** Its speed ÷ the sweep's at the probe's batch, − 1 (absent without either). */
  vsSweep?: number;
}

export interface HostDrift {
  /** The batch size the probe ran (the replica's chosen size). */
  batch: number;
  /** The in-process sweep's items/s at that size: the reference. */
  sweepItemsPerSec: number | null;
  phases: Record<string, PhaseSpeed>;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const usable = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x) && x > 0;

/** Each phase's speed from its probes, against the sweep's at the same batch size. */
export function hostDrift(batch: number, sweepItemsPerSec: number | undefined, phases: Record<string, PhaseProbes>): HostDrift {
  const out: Record<string, PhaseSpeed> = {};
  for (const [name, p] of Object.entries(phases)) {
    const probes = [p.before, p.after].filter(usable);
    const itemsPerSec = probes.length ? probes.reduce((a, b) => a + b, 0) / probes.length : undefined;
    out[name] = {
      ...(usable(p.before) ? { before: p.before } : {}),
      ...(usable(p.after) ? { after: p.after } : {}),
      ...(itemsPerSec !== undefined ? { itemsPerSec: Math.round(itemsPerSec * 10) / 10 } : {}),
      ...(itemsPerSec !== undefined && usable(sweepItemsPerSec) ? { vsSweep: round3(itemsPerSec / sweepItemsPerSec - 1) } : {}),
    };
  }
  return { batch, sweepItemsPerSec: usable(sweepItemsPerSec) ? sweepItemsPerSec : null, phases: out };
}

/**
 * How much faster (+) or slower (−) the host ran during phase `a` than during `b` (`'sweep'`: the
 * in-process sweep), as a fraction; undefined where either has no speed.
 */
export function driftBetween(d: HostDrift, a: string, b: string): number | undefined {
  const speed = (name: string) => (name === 'sweep' ? (d.sweepItemsPerSec ?? undefined) : d.phases[name]?.itemsPerSec);
  const x = speed(a);
  const y = speed(b);
  return usable(x) && usable(y) ? round3(x / y - 1) : undefined;
}

/** Whether a ratio across phases that far apart carries a note. */
export function driftFlagged(drift: number | undefined): boolean {
  return drift !== undefined && Math.abs(drift) > DRIFT_FLAG;
}

/** `+12 %`, `−15 %`, `0 %`. */
function signedPct(x: number): string {
  const pct = Math.round(x * 100);
  return pct === 0 ? '0 %' : `${pct > 0 ? '+' : '−'}${Math.abs(pct)} %`;
}

/** `host +12 %` / `host −15 %`: the note beside a verdict. */
export function driftText(drift: number): string {
  return `host ${signedPct(drift)}`;
}

/** One line for the bench's text: the probe's rate in each phase, relative to the sweep's. */
export function hostDriftLine(d: HostDrift): string {
  const phase = (name: string, p: PhaseSpeed) => {
    if (p.itemsPerSec === undefined) return `${name} -`;
    const rel = p.vsSweep === undefined ? '' : ` (${signedPct(p.vsSweep)})`;
    return `${name} ${Math.round(p.itemsPerSec)}${rel}`;
  };
  const sweep = d.sweepItemsPerSec === null ? '-' : String(Math.round(d.sweepItemsPerSec));
  return `host speed (the model in-process at batch ${d.batch}, items/s, before and after each phase): sweep ${sweep}; ${Object.entries(
    d.phases,
  )
    .map(([n, p]) => phase(n, p))
    .join('; ')}`;
}
