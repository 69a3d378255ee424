// Autoscaling policy, pure: from observations of a model's load (outstanding requests, optionally
// a measured arrival rate) decide how many replicas it should have. No timers and no I/O: the
// caller passes the time in each observation and applies the decision. Like the Kubernetes HPA
// and Ray Serve, a raw recommendation is taken at every observation and stabilised over a window:
// scaling up takes the MIN of the recommendations of the last `upscaleStabilizationMs` (so load
// has to persist), scaling down the MAX of those of the last `downscaleStabilizationMs` (so it
// never flaps), with a cooldown between two steps in the same direction.
import { BadRequestError } from '@flotilla/protocol';

export interface AutoscaleConfig {
  minReplicas: number;
  maxReplicas: number;
  /** Target outstanding requests (queued + in flight) per replica. */
  targetPerReplica: number;
  /** ms the desired count must stay above current before scaling up (default 1000). */
  upscaleStabilizationMs: number;
  /** ms it must stay below before scaling down (default 10000). */
  downscaleStabilizationMs: number;
  /** ms after a scale step before another step in the same direction (default 2000). */
  cooldownMs: number;
  /** Optional: items/s one replica can process (from the model's profile), used to size the step. */
  capacityPerReplica?: number;
  /** Max replicas added in one step (default: unlimited). */
  maxStepUp?: number;
}

export const DEFAULT_AUTOSCALE: Readonly<AutoscaleConfig> = Object.freeze({
  minReplicas: 1,
  maxReplicas: 8,
  targetPerReplica: 4,
  upscaleStabilizationMs: 1000,
  downscaleStabilizationMs: 10_000,
  cooldownMs: 2000,
});

/**
 * Defaults → validated config; never mutates its input. `maxReplicas` defaults to
 * max(DEFAULT_AUTOSCALE.maxReplicas, minReplicas). Throws BadRequestError on bad input.
 */
export function parseAutoscaleConfig(raw: Partial<AutoscaleConfig> & { minReplicas?: number; maxReplicas?: number } = {}): AutoscaleConfig {
  if (raw === null || typeof raw !== 'object') throw new BadRequestError('autoscale config must be an object');
  const minReplicas = raw.minReplicas ?? DEFAULT_AUTOSCALE.minReplicas;
  const c: AutoscaleConfig = {
    minReplicas,
    maxReplicas: raw.maxReplicas ?? Math.max(DEFAULT_AUTOSCALE.maxReplicas, typeof minReplicas === 'number' ? minReplicas : 0),
    targetPerReplica: raw.targetPerReplica ?? DEFAULT_AUTOSCALE.targetPerReplica,
    upscaleStabilizationMs: raw.upscaleStabilizationMs ?? DEFAULT_AUTOSCALE.upscaleStabilizationMs,
    downscaleStabilizationMs: raw.downscaleStabilizationMs ?? DEFAULT_AUTOSCALE.downscaleStabilizationMs,
    cooldownMs: raw.cooldownMs ?? DEFAULT_AUTOSCALE.cooldownMs,
  };
  if (raw.capacityPerReplica !== undefined) c.capacityPerReplica = raw.capacityPerReplica;
  if (raw.maxStepUp !== undefined) c.maxStepUp = raw.maxStepUp;

  const check = (k: keyof AutoscaleConfig, ok: (v: number) => boolean, what: string) => {
    const v = c[k] as unknown;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
      throw new BadRequestError(`invalid autoscale ${k}=${String(v)}: must be ${what}`);
  };
  const HOUR = 3_600_000;
  check('minReplicas', (v) => Number.isInteger(v) && v >= 0, 'an integer ≥ 0');
  check('maxReplicas', (v) => Number.isInteger(v) && v >= 1, 'an integer ≥ 1');
  if (c.minReplicas > c.maxReplicas)
    throw new BadRequestError(`invalid autoscale: minReplicas ${c.minReplicas} > maxReplicas ${c.maxReplicas}`);
  check('targetPerReplica', (v) => v > 0, 'a number > 0');
  check('upscaleStabilizationMs', (v) => v >= 0 && v <= HOUR, 'in [0, 3600000] ms');
  check('downscaleStabilizationMs', (v) => v >= 0 && v <= HOUR, 'in [0, 3600000] ms');
  check('cooldownMs', (v) => v >= 0 && v <= HOUR, 'in [0, 3600000] ms');
  if (c.capacityPerReplica !== undefined) check('capacityPerReplica', (v) => v > 0, 'a number > 0');
  if (c.maxStepUp !== undefined) check('maxStepUp', (v) => Number.isInteger(v) && v >= 1, 'an integer ≥ 1');
  return c;
}

export interface AutoscaleObservation {
  now: number;
  /** Replicas currently ready or loading. */
  current: number;
  /** Total outstanding = sum over replicas of queueDepth + inFlight. */
  outstanding: number;
  /** Optional measured arrival rate, items/s. */
  arrivalRate?: number;
  /** Replicas could not be placed last time (capacity exhausted). */
  unplaceable?: boolean;
}

export interface AutoscaleDecision {
  desired: number;
  reason: string;
}

/** Outstanding requests over a model's replicas: sum of queueDepth + inFlight. */
export function observe(replicas: ReadonlyArray<{ queueDepth: number; inFlight: number }>): number {
  let n = 0;
  for (const r of replicas) n += r.queueDepth + r.inFlight;
  return n;
}

interface Sample {
  t: number;
  rec: number;
}

/**
 * One per autoscaled model. Holds only what stabilisation needs: recent recommendations and
 * the time of the last step up / down. Feed it observations in time order.
 */
export class Autoscaler {
  config: AutoscaleConfig;
  private samples: Sample[] = [];
  private lastUpAt = -Infinity;
  private lastDownAt = -Infinity;
  private lastNow = -Infinity;

  constructor(config: Partial<AutoscaleConfig> = {}) {
    this.config = parseAutoscaleConfig(config);
  }

  /** Sets the items/s one replica sustains (from the model's profile), once known. */
  setCapacity(itemsPerSec: number | undefined): void {
    if (itemsPerSec !== undefined && itemsPerSec > 0 && itemsPerSec !== this.config.capacityPerReplica) {
      this.config = { ...this.config, capacityPerReplica: itemsPerSec };
    }
  }

  /** The raw recommendation for one observation, clamped to [minReplicas, maxReplicas]. */
  recommend(obs: Pick<AutoscaleObservation, 'outstanding' | 'arrivalRate'>): number {
    const c = this.config;
    const outstanding = nonNeg(obs.outstanding);
    let rec = Math.ceil(outstanding / c.targetPerReplica);
    if (c.capacityPerReplica !== undefined && obs.arrivalRate !== undefined) {
      rec = Math.max(rec, Math.ceil(nonNeg(obs.arrivalRate) / c.capacityPerReplica));
    }
    return Math.min(c.maxReplicas, Math.max(c.minReplicas, rec));
  }

  decide(obs: AutoscaleObservation): AutoscaleDecision {
    const c = this.config;
    if (!Number.isFinite(obs.now)) throw new BadRequestError(`autoscale observation: now=${obs.now} is not a time`);
    // A clock that steps back counts as the same instant.
    const now = Math.max(obs.now, this.lastNow);
    this.lastNow = now;
    const current = Math.floor(nonNeg(obs.current));
    const outstanding = nonNeg(obs.outstanding);
    const rec = this.recommend(obs);
    this.record(now, rec);

    if (current > c.maxReplicas) return { desired: c.maxReplicas, reason: `down: ${current} replicas > max ${c.maxReplicas}` };

    // Floor: the configured minimum (e.g. after a worker was lost), or one replica for a cold start.
    const cold = current === 0 && outstanding > 0;
    const base = Math.max(current, c.minReplicas, cold ? 1 : 0);
    const restoring =
      base > current
        ? current < c.minReplicas
          ? `restore: ${current} replicas < min ${c.minReplicas}`
          : `cold start: ${fmt(outstanding)} outstanding, no replicas`
        : undefined;
    const load = `outstanding ${fmt(outstanding)}${this.rateNote(obs.arrivalRate)}`;

    let desired = base;
    let reason: string;
    let step: 'up' | 'down' | undefined;
    if (rec > base) {
      const low = this.windowMin(now, c.upscaleStabilizationMs);
      if (low === undefined || low <= base) reason = `hold: ${load} wants ${rec}, not yet for ${c.upscaleStabilizationMs} ms`;
      else if (now < this.lastUpAt + c.cooldownMs) reason = `hold: ${load} wants ${low}, cooling down after the last step up`;
      else {
        desired = c.maxStepUp === undefined ? low : Math.min(low, base + c.maxStepUp);
        step = 'up';
        reason = `up: ${load} > ${fmt(c.targetPerReplica)}/replica × ${base} for ${c.upscaleStabilizationMs} ms → ${desired}`;
        if (desired < low) reason += ` (step ≤ ${c.maxStepUp}, wants ${low})`;
      }
    } else if (rec < base) {
      const high = this.windowMax(now, c.downscaleStabilizationMs);
      if (high === undefined || high >= base) reason = `hold: ${load} wants ${rec}, not yet for ${c.downscaleStabilizationMs} ms`;
      else if (now < this.lastDownAt + c.cooldownMs) reason = `hold: ${load} wants ${high}, cooling down after the last step down`;
      else {
        desired = high;
        step = 'down';
        reason =
          high === 0
            ? `down: idle (outstanding 0) for ${c.downscaleStabilizationMs} ms → 0`
            : `down: ${load} ≤ ${fmt(c.targetPerReplica)}/replica × ${high} for ${c.downscaleStabilizationMs} ms → ${high}`;
      }
    } else {
      reason = `hold: ${load} fits ${fmt(c.targetPerReplica)}/replica × ${base}`;
    }
    if (restoring && step !== 'up') reason = restoring;
    else if (restoring) reason = `${restoring}; ${reason}`;

    // Capacity exhausted: never ask for more than there is (the configured minimum excepted).
    if (obs.unplaceable) {
      const cap = Math.max(current, c.minReplicas);
      if (desired > cap) {
        reason = `hold: capacity exhausted, ${cap} replicas (wanted ${desired})`;
        desired = cap;
        step = undefined;
      }
    }
    if (step === 'up') this.lastUpAt = now;
    if (step === 'down') this.lastDownAt = now;
    return { desired, reason };
  }

  private rateNote(rate: number | undefined): string {
    const cap = this.config.capacityPerReplica;
    return cap === undefined || rate === undefined ? '' : `, arrival ${fmt(nonNeg(rate))}/s at ${fmt(cap)}/s/replica`;
  }

  private record(now: number, rec: number): void {
    const s = this.samples;
    if (s.length > 0 && s[s.length - 1].t === now) s[s.length - 1].rec = rec;
    else s.push({ t: now, rec });
    // Keep what the longer window needs: every sample inside it and the one in effect at its start.
    const horizon = now - Math.max(this.config.upscaleStabilizationMs, this.config.downscaleStabilizationMs);
    let drop = 0;
    while (drop + 1 < s.length && s[drop + 1].t <= horizon) drop++;
    if (drop > 0) s.splice(0, drop);
  }

  /** Recommendations in effect during [now - windowMs, now]; undefined while history is shorter than the window. */
  private window(now: number, windowMs: number): number[] | undefined {
    const start = now - windowMs;
    const s = this.samples;
    if (s.length === 0 || s[0].t > start) return undefined;
    let i = s.length - 1;
    while (i > 0 && s[i].t > start) i--;
    return s.slice(i).map((x) => x.rec);
  }

  private windowMin(now: number, windowMs: number): number | undefined {
    const w = this.window(now, windowMs);
    return w && Math.min(...w);
  }

  private windowMax(now: number, windowMs: number): number | undefined {
    const w = this.window(now, windowMs);
    return w && Math.max(...w);
  }
}

function nonNeg(v: number | undefined): number {
  return typeof v === 'number' && v > 0 ? v : 0;
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2).replace(/\.?0+$/, '');
}
