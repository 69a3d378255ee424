// Traffic until something is true: the shared load generator (@flotilla/loadgen runLoad) keeps
// `concurrency` callers on a model while a check polled every 250 ms says not yet (a dynamic-shape
// model's background profile of the shape being sent, in `pnpm bench` and `scripts/gpu-check`).
import { setTimeout as sleep } from 'node:timers/promises';
import type { FlotillaClient } from '@flotilla/client';
import { runLoad, type LoadSummary } from '@flotilla/loadgen';
import type { WireTensors } from '@flotilla/protocol';

/** Sends `inputs` to `model` until `done()` or `maxMs`: how long it took (in-flight requests answered) and the load's summary. */
export async function loadUntil(
  c: FlotillaClient,
  model: string,
  inputs: WireTensors,
  o: { concurrency: number; maxMs: number; done: () => Promise<boolean> },
): Promise<{ ms: number; load: LoadSummary }> {
  const t0 = performance.now();
  let stop = false;
  const load = runLoad(c, model, inputs, { concurrency: o.concurrency, durationMs: o.maxMs, until: () => stop });
  try {
    while (!stop && performance.now() - t0 < o.maxMs) {
      if (await o.done()) stop = true;
      else await sleep(250);
    }
  } finally {
    stop = true;
  }
  const summary = await load;
  return { ms: Math.round(performance.now() - t0), load: summary };
}
