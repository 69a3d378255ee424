// A closed-loop load over several models (`flotilla load --mix FILE` / `--zipf S`): each caller
// draws the model of its next request from the mix with its own seeded PRNG, so a run with the
// same seed and concurrency replays the same sequence of models per caller.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { BadRequestError, assertValidName, checkWireTensor, type WireTensors } from '@flotilla/protocol';
import type { FlotillaClient, InferOptions } from '@flotilla/client';
import { LoadStats, type LoadSummary } from './load-stats.js';
import { checkLoadOptions, errorCode, itemsPerRequest, type LoadOptions } from './load-generator.js';
import { WeightedSampler, seededRandom } from './model-mix.js';

/** One model of the mix: its request and its share of the traffic (any non-negative scale). */
export interface MixTarget {
  model: string;
  inputs: WireTensors;
  weight: number;
}

export interface MixLoadOptions extends LoadOptions {
  /** Seed of the callers' PRNGs (caller i uses seed + i). Default 1. */
  seed?: number;
}

export interface MixLoadSummary extends LoadSummary {
  /** The same figures per model. */
  models: Record<string, LoadSummary>;
}

/**
 * Like `runLoad`, over a mix of models: `concurrency` callers for `durationMs`, each request to a
 * model drawn by weight. Errors are counted by code, never thrown; throws only for bad options,
 * targets or inputs, or when the client cannot connect at all.
 */
export async function runMixLoad(client: FlotillaClient, targets: readonly MixTarget[], opts: MixLoadOptions): Promise<MixLoadSummary> {
  checkLoadOptions(opts);
  if (opts.seed !== undefined && !Number.isInteger(opts.seed)) throw new BadRequestError(`seed must be an integer, got ${opts.seed}`);
  const sampler = new WeightedSampler(targets.map((t) => t.weight));
  for (const t of targets) {
    assertValidName('model', t.model);
    for (const [name, tensor] of Object.entries(t.inputs)) checkWireTensor(name, tensor);
  }
  await client.connection();

  const all = new LoadStats();
  const per = new Map(targets.map((t) => [t.model, new LoadStats()]));
  const inferOpts: InferOptions = {
    retries: opts.retries ?? 2,
    ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
  };
  const start = performance.now();
  const end = start + opts.durationMs;

  const caller = async (i: number): Promise<void> => {
    const rand = seededRandom((opts.seed ?? 1) + i);
    while (performance.now() < end) {
      const t = targets[sampler.pick(rand())]!;
      const stats = per.get(t.model)!;
      all.markSent();
      stats.markSent();
      const t0 = performance.now();
      try {
        await client.inferWire(t.model, t.inputs, { ...inferOpts, onRetry: () => (all.recordRetry(), stats.recordRetry()) });
        const ms = performance.now() - t0;
        const items = itemsPerRequest(t.inputs);
        all.recordOk(ms, items);
        stats.recordOk(ms, items);
      } catch (err) {
        all.recordError(errorCode(err));
        stats.recordError(errorCode(err));
        await yieldToLoop();
      }
    }
  };

  const progress = opts.onProgress
    ? setInterval(() => opts.onProgress!(all.summary(performance.now() - start)), opts.progressIntervalMs ?? 1000)
    : undefined;
  progress?.unref();
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, (_, i) => caller(i)));
  } finally {
    if (progress) clearInterval(progress);
  }
  const elapsed = performance.now() - start;
  const models: Record<string, LoadSummary> = {};
  for (const [model, s] of per) models[model] = s.summary(elapsed);
  return { ...all.summary(elapsed), models };
}
