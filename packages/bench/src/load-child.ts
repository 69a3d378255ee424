// Child process of `pnpm bench`, pinned where the load generators run (beside nats-server): the
// closed-loop load on Flotilla (the SDK's inferWire, as runLoad sends it) or on the raw NATS
// baseline (bare nc.request with the SDK's request bytes), each in a process of its own as the
// peers' load generators are, so that neither shares an event loop and a heap with the bench's
// head, its status polling and its results. Prints one JSON line on stdout: the warm-up's and the
// measured run's LoadSummary (with waitForGo, `warm <ok>` first, then waits for SIGUSR2 to measure;
// with `windows: n`, n measured windows, `window <i>` and a wait for SIGUSR2 between them: the bench
// times the model in-process while the load pauses, paired.ts).
//   node packages/bench/dist/load-child.js '{"kind":"flotilla","natsUrl":…,"cluster":…,"model":…,"inputs":[{"name":"x","dims":[1,16]}],…}'
//   node packages/bench/dist/load-child.js '{"kind":"raw","natsUrl":…,"subject":…,"bodyBase64":…,…}'
import { closeBus, connectBus } from '@flotilla/bus';
import { FlotillaClient } from '@flotilla/client';
import { closedLoop, runLoad, type LoadStats, type LoadSummary } from '@flotilla/loadgen';
import { measureWindow, pauseFor } from './load-windows.js';
import { fromTypedArray, type WireTensors } from '@flotilla/protocol';

interface Common {
  natsUrl: string;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  /** After the warm-up, print `warm <requests answered>` and wait for SIGUSR2 before the measured run (the bench reads the replica's state in between). */
  waitForGo?: boolean;
  /**
   * Measured windows of `durationMs` each (default 1). Between two, the callers stop (requests in
   * flight are answered), `window <i>` (the one just ended, from 0) is printed, and the next waits
   * for SIGUSR2.
   */
  windows?: number;
  /**
   * With `windows` > 1: each window's callers start this long before it, and only the requests
   * answered within the window count (its rate is over the window alone): the load restarts from
   * idle after each pause, and the window measures it once the batches have formed, as the
   * in-process model it is paired with runs them back to back. Default 0.
   */
  windowWarmMs?: number;
}
export type LoadChildArgs =
  | (Common & { kind: 'flotilla'; cluster: string; model: string; inputs: Array<{ name: string; dims: number[] }> })
  | (Common & { kind: 'raw'; subject: string; bodyBase64: string });
export interface LoadChildResult {
  warmup: LoadSummary | null;
  /** The first measured window (the only one unless `windows` > 1). */
  run: LoadSummary;
  /** Every measured window, in order (`windows` > 1; with `windowWarmMs`, `sent` counts the requests started within it). */
  windows?: LoadSummary[];
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as LoadChildArgs;
  let once: (durationMs: number, stats?: LoadStats) => Promise<LoadSummary>;
  let close: () => Promise<void>;
  if (a.kind === 'flotilla') {
    const c = new FlotillaClient({ servers: a.natsUrl, cluster: a.cluster });
    const inputs: WireTensors = {};
    for (const { name, dims } of a.inputs) {
      const data = new Float32Array(dims.reduce((x, y) => x * y, 1)).map(() => Math.random() * 2 - 1);
      inputs[name] = fromTypedArray('float32', dims, data);
    }
    once = (durationMs, stats) => runLoad(c, a.model, inputs, { concurrency: a.concurrency, durationMs, ...(stats ? { stats } : {}) });
    close = () => c.close();
  } else {
    const nc = await connectBus({ name: 'bench-raw-load', servers: a.natsUrl });
    const body = Buffer.from(a.bodyBase64, 'base64');
    once = (durationMs, stats) =>
      closedLoop(
        {
          concurrency: a.concurrency,
          durationMs,
          codeOf: (err) => (err as { code?: string }).code ?? (err as Error).name ?? 'ERROR',
          ...(stats ? { stats } : {}),
        },
        async () => {
          await nc.request(a.subject, body, { timeout: 10_000 });
          return 1;
        },
      );
    close = () => closeBus(nc);
  }
  try {
    const warmup = a.warmupMs > 0 ? await once(a.warmupMs) : null;
    if (a.waitForGo) await pauseFor(`warm ${warmup?.ok ?? 0}`);
    const windows: LoadSummary[] = [];
    const count = Math.max(1, a.windows ?? 1);
    for (let i = 0; i < count; i++) {
      if (i > 0) await pauseFor(`window ${i - 1}`);
      windows.push(await measureWindow(once, a.durationMs, count > 1 ? (a.windowWarmMs ?? 0) : 0));
    }
    const result: LoadChildResult = { warmup, run: windows[0]!, ...(windows.length > 1 ? { windows } : {}) };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`load-child: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
