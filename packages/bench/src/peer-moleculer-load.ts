// Child process of `pnpm bench`, pinned where Flotilla's load generator runs: the Moleculer peer's
// load generator, a Moleculer broker on the same nats-server calling the service's action
// (peer-moleculer.ts) closed-loop, like runLoad: `concurrency` callers, each sends the next
// single-item request as soon as its reply is in, for `durationMs` after `warmupMs` unmeasured.
// Latency percentiles come from the same LoadStats as Flotilla's. With `turns`, windows taken in
// turns with Flotilla's load follow (load-windows.ts). Prints one JSON line on stdout.
//   node packages/bench/dist/peer-moleculer-load.js '{"natsUrl":…,"namespace":…,"inputs":[{"name":"x","dims":[1,16]}],…}'
import { execFileSync } from 'node:child_process';
import { ServiceBroker } from 'moleculer';
import { closedLoop, type LoadStats } from '@flotilla/loadgen';
import { measureTurns } from './load-windows.js';
import {
  MOLECULER_ACTION,
  MOLECULER_SERVICE,
  moleculerBrokerOptions,
  type MoleculerInferParams,
  type MoleculerInferReply,
  type MoleculerLoadArgs,
  type MoleculerRun,
} from './peer-moleculer-wire.js';

function load(broker: ServiceBroker, params: MoleculerInferParams, concurrency: number, durationMs: number, stats?: LoadStats) {
  return closedLoop(
    {
      concurrency,
      durationMs,
      codeOf: (err) => String((err as { code?: unknown }).code ?? (err as Error).name),
      ...(stats ? { stats } : {}),
    },
    async () => {
      const r: MoleculerInferReply = await broker.call(MOLECULER_ACTION, params);
      const first = Object.values(r.outputs)[0];
      if (first?.dims[0] !== 1) throw new Error(`reply has dims ${JSON.stringify(first?.dims)}`);
      return 1;
    },
  );
}

/** This process's CPU list as `taskset -cp` reads it back ('?' without taskset). */
function affinity(): string {
  try {
    return execFileSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' })
      .split(':')
      .pop()!
      .trim();
  } catch {
    return '?';
  }
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as MoleculerLoadArgs;
  const inputs: MoleculerInferParams['inputs'] = {};
  for (const { name, dims } of a.inputs) {
    const data = new Float32Array(dims.reduce((x, y) => x * y, 1)).map(() => Math.random() * 2 - 1);
    inputs[name] = { dims, data: Buffer.from(data.buffer) };
  }
  const params: MoleculerInferParams = { inputs };
  const broker = new ServiceBroker(moleculerBrokerOptions(a.natsUrl, a.namespace, `bench-moleculer-load-${process.pid}`));
  await broker.start();
  try {
    await broker.waitForServices(MOLECULER_SERVICE, 30_000);
    if (a.warmupMs > 0) await load(broker, params, a.concurrency, a.warmupMs);
    const s = await load(broker, params, a.concurrency, a.durationMs);
    // Then the windows it takes in turns with Flotilla's (load-windows.ts), if asked.
    const turns = await measureTurns(a, (d, stats) => load(broker, params, a.concurrency, d, stats));
    const errored = Object.values(s.errored).reduce((x, y) => x + y, 0);
    const run: MoleculerRun = {
      itemsPerSec: s.itemsPerSec,
      p50Ms: s.ok ? s.latencyMs.p50 : null,
      p99Ms: s.ok ? s.latencyMs.p99 : null,
      sent: s.sent,
      ok: s.ok,
      errored,
      errors: s.errored,
      concurrency: a.concurrency,
      moleculerVersion: ServiceBroker.MOLECULER_VERSION,
      serializer: 'MsgPack (msgpack5)',
      transporter: 'NATS (nats.js 2)',
      loadAffinity: affinity(),
      ...(turns.length ? { turns: turns.map((t) => t.itemsPerSec) } : {}),
    };
    process.stdout.write(`${JSON.stringify(run)}\n`);
  } finally {
    await broker.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`peer-moleculer-load: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
