import { BadRequestError } from '@flotilla/protocol';
import { Autoscaler, DEFAULT_AUTOSCALE, observe, parseAutoscaleConfig, type AutoscaleConfig } from './autoscaler.js';

interface Load {
  outstanding: number;
  arrivalRate?: number;
}
interface Change {
  t: number;
  from: number;
  to: number;
}
interface SimOptions {
  config?: Partial<AutoscaleConfig>;
  /** Load at time t (ms). */
  load: (t: number) => number | Load;
  until: number;
  step?: number;
  current?: number;
  /** Replicas lost at these times (worker died), taken away before that step's observation. */
  lose?: Record<number, number>;
  /** Cluster capacity in replicas at time t: placements beyond it fail (default unlimited). */
  capacity?: (t: number) => number;
}
interface Step {
  t: number;
  current: number;
  desired: number;
  unplaceable: boolean;
  reason: string;
}

/** Drives an autoscaler over a synthetic trace, applying each decision to the replica count. */
function simulate(o: SimOptions): { changes: Change[]; steps: Step[]; final: number } {
  const as = new Autoscaler(o.config);
  const step = o.step ?? 100;
  let current = o.current ?? as.config.minReplicas;
  let unplaceable = false;
  let lastCapacity = Infinity;
  const changes: Change[] = [];
  const steps: Step[] = [];
  for (let t = 0; t < o.until; t += step) {
    const lost = o.lose?.[t];
    if (lost) current = Math.max(0, current - lost);
    const capacity = o.capacity?.(t) ?? Infinity;
    if (capacity > lastCapacity) unplaceable = false; // room appeared: the head may try again
    lastCapacity = capacity;
    const l = o.load(t);
    const load = typeof l === 'number' ? { outstanding: l } : l;
    const d = as.decide({ now: t, current, ...load, unplaceable });
    steps.push({ t, current, desired: d.desired, unplaceable, reason: d.reason });
    let next = d.desired;
    if (next > capacity) {
      next = Math.max(current, capacity);
      unplaceable = true;
    }
    if (next !== current) changes.push({ t, from: current, to: next });
    current = next;
  }
  return { changes, steps, final: current };
}

const cfg = (over: Partial<AutoscaleConfig> = {}): Partial<AutoscaleConfig> => ({ minReplicas: 1, maxReplicas: 10, ...over });
const during =
  (from: number, to: number, hi: number, lo = 0) =>
  (t: number) =>
    t >= from && t < to ? hi : lo;

describe('autoscaler policy', () => {
  describe('step up', () => {
    it('scales up exactly one upscale window after the load jumps, to the recommendation', () => {
      const r = simulate({ config: cfg(), load: (t) => (t >= 5000 ? 40 : 0), until: 20_000 });
      expect(r.changes).toEqual([{ t: 6000, from: 1, to: 10 }]);
      const up = r.steps.find((s) => s.t === 6000)!;
      expect(up.reason).toBe('up: outstanding 40 > 4/replica × 1 for 1000 ms → 10');
    });

    it('never goes above maxReplicas', () => {
      const r = simulate({ config: cfg({ maxReplicas: 6 }), load: (t) => (t >= 5000 ? 400 : 0), until: 20_000 });
      expect(r.changes).toEqual([{ t: 6000, from: 1, to: 6 }]);
    });

    it('honours the upscale window with coarse (500 ms) and fine (100 ms) steps alike', () => {
      for (const step of [100, 250, 500]) {
        const r = simulate({ config: cfg({ upscaleStabilizationMs: 1500 }), load: (t) => (t >= 3000 ? 20 : 4), step, until: 10_000 });
        expect(r.changes).toEqual([{ t: 4500, from: 1, to: 5 }]);
      }
    });

    it('steps by at most maxStepUp, waiting the cooldown between steps', () => {
      const r = simulate({ config: cfg({ maxStepUp: 3 }), load: (t) => (t >= 5000 ? 40 : 0), until: 20_000 });
      expect(r.changes).toEqual([
        { t: 6000, from: 1, to: 4 },
        { t: 8000, from: 4, to: 7 },
        { t: 10_000, from: 7, to: 10 },
      ]);
      expect(r.steps.find((s) => s.t === 6000)!.reason).toContain('(step ≤ 3, wants 10)');
      expect(r.steps.find((s) => s.t === 7000)!.reason).toMatch(/^hold: .*cooling down after the last step up/);
    });

    it('sizes the step from the arrival rate when the profile gives a per-replica capacity', () => {
      // 2 outstanding would want 1 replica; 130 items/s at 20/s/replica want 7.
      const load = (t: number) => (t >= 2000 ? { outstanding: 2, arrivalRate: 130 } : { outstanding: 0, arrivalRate: 0 });
      const r = simulate({ config: cfg({ capacityPerReplica: 20 }), load, until: 8000 });
      expect(r.changes).toEqual([{ t: 3000, from: 1, to: 7 }]);
      expect(r.steps.find((s) => s.t === 3000)!.reason).toBe(
        'up: outstanding 2, arrival 130/s at 20/s/replica > 4/replica × 1 for 1000 ms → 7',
      );
      // Without a capacity the rate is ignored.
      expect(simulate({ config: cfg(), load, until: 8000 }).changes).toEqual([]);
    });
  });

  it('follows a ramp monotonically, one step per cooldown', () => {
    // Outstanding grows by 4 every second: the recommendation grows by one replica a second.
    const r = simulate({ config: cfg(), load: (t) => Math.floor(t / 1000) * 4, step: 250, until: 30_000 });
    expect(r.changes).toEqual([
      { t: 3000, from: 1, to: 2 },
      { t: 5000, from: 2, to: 4 },
      { t: 7000, from: 4, to: 6 },
      { t: 9000, from: 6, to: 8 },
      { t: 11_000, from: 8, to: 10 },
    ]);
    for (const c of r.changes) expect(c.to).toBeGreaterThan(c.from);
  });

  describe('spikes', () => {
    it('ignores a spike shorter than the upscale window', () => {
      const r = simulate({ config: cfg(), load: during(5000, 5900, 400), until: 30_000 });
      expect(r.changes).toEqual([]);
      expect(r.steps.find((s) => s.t === 5500)!.reason).toBe('hold: outstanding 400 wants 10, not yet for 1000 ms');
    });

    it('ignores a spike lasting exactly the window (load must still be there at its end)', () => {
      expect(simulate({ config: cfg(), load: during(5000, 6000, 400), until: 30_000 }).changes).toEqual([]);
    });

    it('scales for a burst just longer than the window, then back down one downscale window after it ends', () => {
      const r = simulate({ config: cfg(), load: during(5000, 6100, 400), until: 30_000 });
      expect(r.changes).toEqual([
        { t: 6000, from: 1, to: 10 },
        { t: 16_100, from: 10, to: 1 },
      ]);
    });

    it('uses the lowest recommendation of the window: a dip inside it delays the step', () => {
      // 40 from 5 s, one 100 ms dip to 8 (2 replicas) at 5.5 s.
      const load = (t: number) => (t === 5500 ? 8 : t >= 5000 ? 40 : 0);
      const r = simulate({ config: cfg(), load, until: 12_000 });
      expect(r.changes).toEqual([
        { t: 6000, from: 1, to: 2 },
        { t: 8000, from: 2, to: 10 },
      ]);
    });
  });

  describe('oscillating load does not flap', () => {
    it('square wave faster than the downscale window: one step up, then steady', () => {
      // 1.5 s at 40 outstanding, 1.5 s at 2, for a minute.
      const r = simulate({ config: cfg(), load: (t) => (t % 3000 < 1500 ? 40 : 2), until: 60_000 });
      expect(r.changes).toEqual([{ t: 1000, from: 1, to: 10 }]);
    });

    it('square wave faster than the upscale window: never scales', () => {
      const r = simulate({ config: cfg(), load: (t) => (t % 800 < 400 ? 40 : 2), until: 60_000 });
      expect(r.changes).toEqual([]);
    });

    it('slow square wave: exactly one change per half period', () => {
      // 15 s at 40, 15 s at 4, four periods.
      const r = simulate({ config: cfg(), load: (t) => (t % 30_000 < 15_000 ? 40 : 4), until: 120_000 });
      expect(r.changes).toEqual([
        { t: 1000, from: 1, to: 10 },
        { t: 25_000, from: 10, to: 1 },
        { t: 31_000, from: 1, to: 10 },
        { t: 55_000, from: 10, to: 1 },
        { t: 61_000, from: 1, to: 10 },
        { t: 85_000, from: 10, to: 1 },
        { t: 91_000, from: 1, to: 10 },
        { t: 115_000, from: 10, to: 1 },
      ]);
    });

    it('noisy load: few changes, and never down within a downscale window of the last up', () => {
      let seed = 12345;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const noise = Array.from({ length: 600 }, () => Math.round(20 + (rand() - 0.5) * 24)); // 8..32 → 2..8 replicas
      const r = simulate({ config: cfg(), load: (t) => noise[t / 100], until: 60_000 });
      expect(r.changes.length).toBeGreaterThan(0);
      expect(r.changes.length).toBeLessThanOrEqual(4);
      let lastUp = -Infinity;
      for (const c of r.changes) {
        if (c.to > c.from) lastUp = c.t;
        else expect(c.t - lastUp).toBeGreaterThanOrEqual(10_000);
      }
    });
  });

  describe('load stops', () => {
    it('goes back to min exactly one downscale window after the load stops', () => {
      const r = simulate({ config: cfg(), load: (t) => (t < 30_000 ? 40 : 0), until: 60_000 });
      expect(r.changes).toEqual([
        { t: 1000, from: 1, to: 10 },
        { t: 40_000, from: 10, to: 1 },
      ]);
      expect(r.steps.find((s) => s.t === 39_900)!.reason).toBe('hold: outstanding 0 wants 1, not yet for 10000 ms');
      expect(r.steps.find((s) => s.t === 40_000)!.reason).toBe('down: outstanding 0 ≤ 4/replica × 1 for 10000 ms → 1');
    });

    it('goes down to the highest recommendation of the window, not below', () => {
      // Drops to 12 outstanding (3 replicas) at 30 s, with one blip of 24 (6 replicas) at 35 s.
      const load = (t: number) => (t < 30_000 ? 40 : t === 35_000 ? 24 : 12);
      const r = simulate({ config: cfg(), load, until: 60_000 });
      expect(r.changes).toEqual([
        { t: 1000, from: 1, to: 10 },
        { t: 40_000, from: 10, to: 6 },
        { t: 45_100, from: 6, to: 3 },
      ]);
    });

    it('respects the cooldown between two steps down', () => {
      const load = (t: number) => (t < 30_000 ? 40 : t === 30_500 ? 24 : 12);
      const r = simulate({ config: cfg(), load, until: 60_000 });
      // The window drops to 6 at 40 s and to 3 at 40.6 s, but the cooldown holds that until 42 s.
      expect(r.changes).toEqual([
        { t: 1000, from: 1, to: 10 },
        { t: 40_000, from: 10, to: 6 },
        { t: 42_000, from: 6, to: 3 },
      ]);
    });
  });

  describe('scale to zero', () => {
    it('with min 0: cold start at once, idle to zero after the downscale window, cold start again', () => {
      const load = (t: number) => (t < 5000 ? 8 : t >= 20_000 ? 1 : 0);
      const r = simulate({ config: cfg({ minReplicas: 0 }), load, until: 40_000, current: 0 });
      expect(r.changes).toEqual([
        { t: 0, from: 0, to: 1 },
        { t: 1000, from: 1, to: 2 },
        { t: 15_000, from: 2, to: 0 },
        { t: 20_000, from: 0, to: 1 },
      ]);
      expect(r.steps.find((s) => s.t === 0)!.reason).toBe('cold start: 8 outstanding, no replicas');
      expect(r.steps.find((s) => s.t === 15_000)!.reason).toBe('down: idle (outstanding 0) for 10000 ms → 0');
    });

    it('with min 0: a trickle of requests inside every window keeps one replica', () => {
      const r = simulate({ config: cfg({ minReplicas: 0 }), load: (t) => (t % 5000 === 0 ? 1 : 0), until: 60_000, current: 0 });
      expect(r.changes).toEqual([{ t: 0, from: 0, to: 1 }]);
    });

    it('with min 1: never below one', () => {
      const r = simulate({ config: cfg(), load: () => 0, until: 60_000 });
      expect(r.changes).toEqual([]);
      expect(r.final).toBe(1);
    });
  });

  describe('worker loss', () => {
    it('restores min at once when replicas are lost (no window, no cooldown)', () => {
      const r = simulate({ config: cfg({ minReplicas: 2 }), load: () => 0, lose: { 5000: 2 }, until: 10_000 });
      expect(r.changes).toEqual([{ t: 5000, from: 0, to: 2 }]);
      expect(r.steps.find((s) => s.t === 5000)!.reason).toBe('restore: 0 replicas < min 2');
    });

    it('restores the load-driven count at once when the load has persisted', () => {
      const r = simulate({ config: cfg({ minReplicas: 2 }), load: () => 16, lose: { 20_000: 3 }, until: 30_000 });
      expect(r.changes).toEqual([
        { t: 1000, from: 2, to: 4 },
        { t: 20_000, from: 1, to: 4 },
      ]);
      expect(r.steps.find((s) => s.t === 20_000)!.reason).toMatch(/^restore: 1 replicas < min 2; up: outstanding 16 > 4\/replica × 2/);
    });

    it('with a cold start after losing everything but min 0, goes to one at once', () => {
      const r = simulate({ config: cfg({ minReplicas: 0 }), load: () => 4, lose: { 5000: 1 }, until: 10_000, current: 1 });
      expect(r.changes).toEqual([{ t: 5000, from: 0, to: 1 }]);
    });

    it('brings a count above max (config lowered) down to max at once', () => {
      const as = new Autoscaler(cfg({ maxReplicas: 3 }));
      expect(as.decide({ now: 0, current: 7, outstanding: 100 })).toEqual({ desired: 3, reason: 'down: 7 replicas > max 3' });
    });
  });

  describe('capacity exhausted', () => {
    it('never asks for more than current while replicas are unplaceable, and resumes when room appears', () => {
      const r = simulate({ config: cfg(), load: () => 40, capacity: (t) => (t < 10_000 ? 3 : 10), until: 20_000 });
      expect(r.changes).toEqual([
        { t: 1000, from: 1, to: 3 },
        { t: 10_000, from: 3, to: 10 },
      ]);
      const stuck = r.steps.filter((s) => s.unplaceable);
      expect(stuck.length).toBe(89); // 1.1 s .. 9.9 s
      for (const s of stuck) {
        expect(s.desired).toBeLessThanOrEqual(s.current);
        // Cooling down after the step up to 3 until 3 s, then held back by the exhausted capacity.
        expect(s.reason).toBe(
          s.t < 3000
            ? 'hold: outstanding 40 wants 10, cooling down after the last step up'
            : 'hold: capacity exhausted, 3 replicas (wanted 10)',
        );
      }
    });

    it('still scales down while unplaceable', () => {
      const as = new Autoscaler(cfg({ downscaleStabilizationMs: 0, cooldownMs: 0 }));
      expect(as.decide({ now: 0, current: 5, outstanding: 4, unplaceable: true }).desired).toBe(1);
    });

    it('suppresses a cold start too, but keeps asking for min', () => {
      const zero = new Autoscaler(cfg({ minReplicas: 0 }));
      expect(zero.decide({ now: 0, current: 0, outstanding: 5, unplaceable: true }).desired).toBe(0);
      const two = new Autoscaler(cfg({ minReplicas: 2 }));
      expect(two.decide({ now: 0, current: 0, outstanding: 5, unplaceable: true }).desired).toBe(2);
    });
  });

  describe('without history', () => {
    it('holds until the history covers the window', () => {
      const as = new Autoscaler(cfg());
      expect(as.decide({ now: 1000, current: 1, outstanding: 40 }).desired).toBe(1);
      expect(as.decide({ now: 1999, current: 1, outstanding: 40 }).desired).toBe(1);
      expect(as.decide({ now: 2000, current: 1, outstanding: 40 }).desired).toBe(10);
    });

    it('zero windows act on every observation', () => {
      const as = new Autoscaler(cfg({ upscaleStabilizationMs: 0, downscaleStabilizationMs: 0, cooldownMs: 0 }));
      expect(as.decide({ now: 0, current: 1, outstanding: 40 }).desired).toBe(10);
      expect(as.decide({ now: 1, current: 10, outstanding: 9 }).desired).toBe(3);
      expect(as.decide({ now: 2, current: 3, outstanding: 12 }).desired).toBe(3);
    });

    it('treats a clock stepping back as the same instant, and refuses a non-finite time', () => {
      const as = new Autoscaler(cfg());
      as.decide({ now: 5000, current: 1, outstanding: 0 });
      expect(as.decide({ now: 4000, current: 1, outstanding: 40 }).desired).toBe(1);
      expect(as.decide({ now: 5999, current: 1, outstanding: 40 }).desired).toBe(1);
      expect(as.decide({ now: 6000, current: 1, outstanding: 40 }).desired).toBe(10);
      expect(() => as.decide({ now: NaN, current: 1, outstanding: 0 })).toThrow(BadRequestError);
    });
  });

  it('observe sums queued and in-flight requests', () => {
    expect(observe([])).toBe(0);
    expect(
      observe([
        { queueDepth: 3, inFlight: 8 },
        { queueDepth: 0, inFlight: 2 },
        { queueDepth: 5, inFlight: 0 },
      ]),
    ).toBe(18);
  });

  describe('parseAutoscaleConfig', () => {
    it('fills defaults', () => {
      expect(parseAutoscaleConfig({})).toEqual({ ...DEFAULT_AUTOSCALE });
      expect(DEFAULT_AUTOSCALE).toEqual({
        minReplicas: 1,
        maxReplicas: 8,
        targetPerReplica: 4,
        upscaleStabilizationMs: 1000,
        downscaleStabilizationMs: 10_000,
        cooldownMs: 2000,
      });
      expect(parseAutoscaleConfig({ minReplicas: 12 }).maxReplicas).toBe(12);
      expect(parseAutoscaleConfig({ minReplicas: 0, maxReplicas: 3, capacityPerReplica: 50, maxStepUp: 2 })).toEqual({
        ...DEFAULT_AUTOSCALE,
        minReplicas: 0,
        maxReplicas: 3,
        capacityPerReplica: 50,
        maxStepUp: 2,
      });
    });

    it.each([
      ['min > max', { minReplicas: 4, maxReplicas: 2 }, /minReplicas 4 > maxReplicas 2/],
      ['negative min', { minReplicas: -1 }, /minReplicas=-1/],
      ['fractional min', { minReplicas: 1.5 }, /minReplicas=1.5/],
      ['max 0', { minReplicas: 0, maxReplicas: 0 }, /maxReplicas=0/],
      ['NaN max', { maxReplicas: NaN }, /maxReplicas=NaN/],
      ['zero target', { targetPerReplica: 0 }, /targetPerReplica=0/],
      ['negative target', { targetPerReplica: -4 }, /targetPerReplica=-4/],
      ['negative upscale window', { upscaleStabilizationMs: -1 }, /upscaleStabilizationMs=-1/],
      ['infinite downscale window', { downscaleStabilizationMs: Infinity }, /downscaleStabilizationMs=Infinity/],
      ['negative cooldown', { cooldownMs: -5 }, /cooldownMs=-5/],
      ['zero capacity', { capacityPerReplica: 0 }, /capacityPerReplica=0/],
      ['zero step', { maxStepUp: 0 }, /maxStepUp=0/],
      ['fractional step', { maxStepUp: 1.5 }, /maxStepUp=1.5/],
      ['string', { maxReplicas: '3' as unknown as number }, /maxReplicas=3/],
    ])('rejects %s', (_name, raw, message) => {
      expect(() => parseAutoscaleConfig(raw)).toThrow(BadRequestError);
      expect(() => parseAutoscaleConfig(raw)).toThrow(message);
    });

    it('does not modify its input', () => {
      const raw = { minReplicas: 2, targetPerReplica: 8 };
      const before = JSON.stringify(raw);
      const c = parseAutoscaleConfig(raw);
      c.minReplicas = 5;
      expect(JSON.stringify(raw)).toBe(before);
      expect(() => parseAutoscaleConfig(null as unknown as Parameters<typeof parseAutoscaleConfig>[0])).toThrow(BadRequestError);
    });
  });
});

describe('capacity from the profile', () => {
  it('sizes the recommendation from the arrival rate once the capacity is set', () => {
    const a = new Autoscaler({ minReplicas: 1, maxReplicas: 10, targetPerReplica: 4 });
    expect(a.recommend({ outstanding: 0, arrivalRate: 5000 })).toBe(1);
    a.setCapacity(1000);
    expect(a.config.capacityPerReplica).toBe(1000);
    expect(a.recommend({ outstanding: 0, arrivalRate: 5000 })).toBe(5);
    a.setCapacity(0);
    expect(a.config.capacityPerReplica).toBe(1000);
  });
});
