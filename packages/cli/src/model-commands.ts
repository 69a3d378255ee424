// Commands that talk to a running cluster: deploy, undeploy, scale, ls, describe, status, infer.
import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { FlotillaClient } from '@flotilla/client';
import { BadRequestError } from '@flotilla/protocol';
import { busOptions, withConnectionOptions, type ConnectionFlags } from './connection-options.js';
import { describeText } from './describe-command.js';
import { formatBytes, parseSessionHost, reportError, table } from './format.js';
import { optionParser } from './option-parser.js';
import { readTensorFile, tensorsToJson, writeTensorFile } from './tensor-file.js';
import { parseShapeBuckets } from './shape-buckets.js';
import { deploymentRows, parseWatchInterval, statusText } from './status-view.js';
import { watchStatus } from './status-watch.js';
import { profilePlotSvg } from './profile-plot.js';

/** Runs a command body with a client; prints errors with their code; sets the exit code. */
async function withClient(flags: ConnectionFlags & { json?: boolean }, body: (c: FlotillaClient) => Promise<void>): Promise<void> {
  const { cluster, ...bus } = busOptions(flags);
  const client = new FlotillaClient({ ...bus, cluster, reconnectForever: false });
  try {
    await body(client);
  } catch (err) {
    process.exitCode = reportError(err, !!flags.json);
  } finally {
    await client.close();
  }
}

const print = (x: unknown): void => void process.stdout.write(JSON.stringify(x, null, 2) + '\n');

/** A per-shape profile's shape for people: `x [*,3,48,320]` (the batch axis as `*`). */
function profileShapeText(shape: Record<string, number[]>): string {
  return Object.entries(shape)
    .map(([name, dims]) => `${name} [*,${dims.join(',')}]`)
    .join(', ');
}

/** Why a model has no stored profile, from what its replicas say (their profile summary). */
async function noProfileReason(c: FlotillaClient, model: string): Promise<string> {
  const replicas = (await c.status()).workers.flatMap((w) => w.replicas).filter((r) => r.model === model);
  const p = replicas.find((r) => r.profile)?.profile;
  if (!p)
    return replicas.length
      ? 'its replica is still loading (profiles are measured at load)'
      : 'no replica has loaded it yet (profiles are measured at load)';
  switch (p.source) {
    case 'per-shape': {
      // The replica's own reason (it names any buckets), without its '(N of M shapes profiled)' count.
      const dims = p.reason.replace(/ \(\d+ of \d+ shapes? profiled\)$/, '');
      const busy = (p.shapes ?? []).filter((s) => s.state === 'queued' || s.state === 'profiling').length;
      return `${dims} (${busy ? `${busy} shape${busy === 1 ? '' : 's'} being profiled` : 'none yet'})`;
    }
    case 'disabled':
    case 'skipped':
      return p.reason;
    default:
      return 'not stored (the profile store could not be written)';
  }
}

export function modelCommands(program: Command): void {
  withConnectionOptions(
    program
      .command('deploy <file>')
      .description('upload an ONNX file and deploy it under a name')
      .requiredOption('--name <name>', 'deployment (model) name')
      .addOption(new Option('--device <kind>', 'where replicas run').choices(['gpu', 'cpu', 'any']).default('any'))
      .option('--no-fallback', 'with --device gpu: do not fall back to CPU')
      .option('--replicas <n>', 'replicas to run', (v) => Number(v), 1)
      .option('--min-replicas <n>', 'autoscaling lower bound (0 allows scale to zero)', (v) => Number(v))
      .option('--max-replicas <n>', 'autoscaling upper bound (autoscaling is on when it exceeds the lower bound)', (v) => Number(v))
      .option('--target-per-replica <n>', 'autoscaling target: outstanding requests per replica (default 4)', (v) => Number(v))
      .option('--latency-slo-ms <ms>', 'profiling: p99 objective for one batch (default 50)', (v) => Number(v))
      .option('--no-profile', 'do not profile on first load')
      .option('--sample-input <file>', 'tensor JSON (as infer --input takes): profile its shape at load (models with dynamic dims)')
      .option(
        '--shape-buckets <dim=bounds>',
        'profile and batch requests per bucket of a dynamic dim, e.g. seq=16,32,64 (repeatable; default: per exact shape)',
        optionParser((v: string, previous?: Record<string, number[]>) => parseShapeBuckets(v, previous)),
      )
      .option('--compile', "always cache onnxruntime's optimised graph (default: where the profile finds it helps)")
      .option('--no-compile', 'never cache the optimised graph')
      .option('--no-tune-threads', 'profiling: do not measure onnxruntime thread settings (CPU)')
      .option('--no-warmup', 'do not run a new replica once on synthetic inputs before it serves')
      .option(
        '--session-host <host>',
        "where replicas' sessions run: thread, event-loop or auto (default: the worker's --session-host)",
        optionParser((v) => parseSessionHost(v)),
      )
      .option('--intra-op-threads <n>', 'CPU replicas: threads per operator (default: chosen by the profile)', (v) => Number(v))
      .option('--inter-op-threads <n>', 'with --intra-op-threads: operators run at once (parallel mode when > 1)', (v) => Number(v))
      .option('--memory <bytes>', 'memory one replica needs (bytes); default estimated from the file', (v) => Number(v))
      .option('--max-batch-size <n>', 'most items per batch', (v) => Number(v))
      .option('--max-queue-delay-ms <ms>', 'longest wait for a batch to fill', (v) => Number(v))
      .option('--max-queue-length <n>', 'queued requests per replica before OVERLOADED', (v) => Number(v))
      .option(
        '--pad-batches',
        'run every batch padded to --max-batch-size rows (default: where the profile finds a change of batch size costs more)',
      )
      .option('--no-pad-batches', 'never pad batches')
      .option('--pin', 'never evict this deployment')
      .option('--no-wait', 'return without waiting for replicas to be ready')
      .option('--timeout <ms>', 'how long to wait for readiness', (v) => Number(v), 120_000)
      .option('--json', 'print JSON'),
  ).action(async (file: string, o) =>
    withClient(o, async (c) => {
      if (o.interOpThreads !== undefined && o.intraOpThreads === undefined)
        throw new BadRequestError('--inter-op-threads needs --intra-op-threads');
      const batching = Object.fromEntries(
        Object.entries({
          maxBatchSize: o.maxBatchSize,
          maxQueueDelayMs: o.maxQueueDelayMs,
          maxQueueLength: o.maxQueueLength,
          padBatches: o.padBatches,
        }).filter(([, v]) => v !== undefined),
      );
      const status = await c.deploy(file, o.name, {
        device: o.device,
        allowFallback: o.fallback,
        replicas: o.replicas,
        minReplicas: o.minReplicas,
        maxReplicas: o.maxReplicas,
        autoscale: o.targetPerReplica !== undefined ? { targetPerReplica: o.targetPerReplica } : {},
        profile: {
          ...(o.profile === false ? { enabled: false } : {}),
          ...(o.latencySloMs !== undefined ? { latencySloMs: o.latencySloMs } : {}),
          // The spec carries the sample's shape only: the profiler makes synthetic data of it.
          ...(o.sampleInput !== undefined
            ? { shapes: [Object.fromEntries(Object.entries(await readTensorFile(o.sampleInput)).map(([n, t]) => [n, t.dims]))] }
            : {}),
          ...(o.tuneThreads === false ? { tuneThreads: false } : {}),
          ...(o.shapeBuckets !== undefined ? { buckets: o.shapeBuckets } : {}),
        },
        ...(o.intraOpThreads !== undefined
          ? {
              threads: {
                intraOp: o.intraOpThreads,
                interOp: o.interOpThreads ?? 1,
                mode: (o.interOpThreads ?? 1) > 1 ? 'parallel' : 'sequential',
              },
            }
          : {}),
        compile: o.compile,
        warmup: o.warmup,
        ...(o.sessionHost !== undefined ? { sessionHost: o.sessionHost } : {}),
        memoryBytes: o.memory,
        batching,
        pin: !!o.pin,
        wait: o.wait,
        waitTimeoutMs: o.timeout,
      });
      if (o.json) print(status);
      else process.stdout.write(`deployed ${o.name}: ${status.ready}/${status.spec.replicas} replicas ready\n`);
    }),
  );

  withConnectionOptions(
    program.command('undeploy <name>').description('remove a deployment and its replicas').option('--json', 'print JSON'),
  ).action(async (name: string, o) =>
    withClient(o, async (c) => {
      const r = await c.undeploy(name);
      if (o.json) print(r);
      else process.stdout.write(`undeployed ${name}\n`);
    }),
  );

  withConnectionOptions(
    program
      .command('scale <name> <replicas>')
      .description('set the number of replicas')
      .option('--wait', 'wait until they are ready')
      .option('--json', 'print JSON'),
  ).action(async (name: string, replicas: string, o) =>
    withClient(o, async (c) => {
      const s = await c.scale(name, Number(replicas), { wait: !!o.wait });
      if (o.json) print(s);
      else process.stdout.write(`${name}: ${s.ready}/${s.spec.replicas} replicas ready\n`);
    }),
  );

  withConnectionOptions(program.command('ls').description('list deployments').option('--json', 'print JSON')).action(async (o) =>
    withClient(o, async (c) => {
      const ds = await c.list();
      if (o.json) print(ds);
      else process.stdout.write(deploymentRows(ds) + '\n');
    }),
  );

  withConnectionOptions(
    program
      .command('describe <model>')
      .description("one deployment: its spec, replicas and the model's inputs and outputs (dims with symbolic names; -1: dynamic)")
      .option('--json', 'print the deployment status as JSON'),
  ).action(async (model: string, o) =>
    withClient(o, async (c) => {
      const d = await c.describe(model);
      if (o.json) print(d);
      else process.stdout.write(describeText(d));
    }),
  );

  withConnectionOptions(
    program
      .command('status')
      .description('workers, devices, memory, replicas, queue depths')
      .option('--watch', 'refresh until Ctrl-C: redraw in place on a terminal, else a timestamped snapshot per interval')
      .option('--interval <ms>', 'with --watch: refresh period in ms (default 1000, at least 100)')
      .option('--json', 'print JSON (with --watch: one line per snapshot)'),
  ).action(async (o) =>
    withClient(o, async (c) => {
      if (!o.watch) {
        if (o.interval !== undefined) throw new BadRequestError('--interval needs --watch');
        const s = await c.status();
        if (o.json) print(s);
        else process.stdout.write(statusText(s));
        return;
      }
      const intervalMs = parseWatchInterval(o.interval);
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await watchStatus({
          intervalMs,
          tty: !!process.stdout.isTTY,
          json: !!o.json,
          status: () => c.status(),
          write: (text) => void process.stdout.write(text),
          signal: ac.signal,
          size: () => ({ columns: process.stdout.columns, rows: process.stdout.rows }),
        });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    }),
  );

  withConnectionOptions(
    program
      .command('infer <model>')
      .description('run a model on tensors from a JSON file')
      .requiredOption('--input <file>', 'JSON: { "<input>": { "dtype": "float32", "dims": [1, 3], "data": [...] } }')
      .option('--output <file>', 'write the outputs (same JSON form) to this file')
      .option('--timeout <ms>', 'deadline', (v) => Number(v), 30_000)
      .option('--json', 'print outputs and timing as JSON'),
  ).action(async (model: string, o) =>
    withClient(o, async (c) => {
      const inputs = await readTensorFile(o.input);
      const t0 = performance.now();
      const { outputs, meta } = await c.inferWire(model, inputs, { timeoutMs: o.timeout });
      const latencyMs = +(performance.now() - t0).toFixed(2);
      if (o.output) await writeTensorFile(o.output, outputs);
      if (o.json) print({ model, outputs: tensorsToJson(outputs), meta, latencyMs });
      else {
        for (const [name, t] of Object.entries(tensorsToJson(outputs))) {
          const head = t.data.slice(0, 8).map((x) => (typeof x === 'number' ? +x.toFixed(5) : x));
          process.stdout.write(`${name} ${t.dtype}[${t.dims.join(',')}] ${JSON.stringify(head)}${t.data.length > 8 ? ' ...' : ''}\n`);
        }
        process.stdout.write(
          `latency ${latencyMs} ms (queue ${meta.queueMs} ms, run ${meta.runMs} ms, batch ${meta.batch}, ${meta.worker}/${meta.replica})\n`,
        );
      }
    }),
  );

  withConnectionOptions(
    program
      .command('events')
      .description('recent cluster events: loaded, unloaded, evicted, load_failed')
      .option('--model <name>', 'only this model')
      .option('--limit <n>', 'most recent N', (v) => Number(v), 100)
      .option('--json', 'print JSON'),
  ).action(async (o) =>
    withClient(o, async (c) => {
      const events = await c.events({ model: o.model, limit: o.limit });
      if (o.json) return print(events);
      process.stdout.write(
        table(
          ['AT', 'TYPE', 'MODEL', 'WORKER', 'DEVICE', 'BYTES', 'REASON'],
          events.map((e) => [
            new Date(e.at).toISOString(),
            e.type,
            e.model ?? '',
            e.worker ?? '',
            e.device ?? '',
            e.bytes !== undefined ? formatBytes(e.bytes) : '',
            e.reason ?? '',
          ]),
        ) + '\n',
      );
    }),
  );

  withConnectionOptions(
    program
      .command('profile <model>')
      .description("the model's profiles: latency and throughput per batch size, memory, chosen batching")
      .option('--plot <file>', 'also write items/s and p99 against batch size as an SVG plot to this file')
      .option('--json', 'print JSON'),
  ).action(async (model: string, o) =>
    withClient(o, async (c) => {
      const profiles = await c.profiles(model);
      if (o.plot && profiles.length > 0) await writeFile(o.plot, profilePlotSvg(model, profiles));
      if (o.json) return print(profiles);
      if (profiles.length === 0) {
        process.stdout.write(`no profile stored for '${model}': ${await noProfileReason(c, model)}${o.plot ? ' (no plot written)' : ''}\n`);
        return;
      }
      if (o.plot) process.stdout.write(`plot of ${profiles.length} profile${profiles.length === 1 ? '' : 's'} written to ${o.plot}\n\n`);
      for (const p of profiles) {
        process.stdout.write(
          `${model}${p.shape ? ` at shape ${profileShapeText(p.shape)}` : ''} on ${p.deviceClass} (onnxruntime ${p.ortVersion}, measured in ${p.tookMs} ms, p99 objective ${p.latencySloMs} ms)\n` +
            table(
              ['BATCH', 'RUNS', 'P50 MS', 'P99 MS', 'ITEMS/S', 'PEAK MEM'],
              p.rows.map((r) => [r.batch, r.runs, r.p50Ms, r.p99Ms, r.itemsPerSec, formatBytes(r.peakBytes)]),
            ) +
            `\nchosen: maxBatchSize ${p.chosen.maxBatchSize}, maxQueueDelayMs ${p.chosen.maxQueueDelayMs} — ${p.chosen.reason}` +
            `\nsweep stopped: ${p.stoppedBecause}` +
            `\nmemory: session ${formatBytes(p.memory.sessionBytes)}, peak ${formatBytes(p.memory.peakBytes)}, charged per replica ${formatBytes(p.memory.replicaBytes)}\n` +
            (p.compile ? `compile cache: ${p.compile.reason}\n` : '') +
            (p.threads
              ? `threads (measured in ${p.threads.tookMs} ms):\n` +
                table(
                  ['INTRA-OP', 'INTER-OP', 'MODE', 'BATCH', 'P50 MS', 'P99 MS', 'ITEMS/S'],
                  p.threads.rows.map((r) => [
                    r.intraOp,
                    r.mode === 'parallel' ? r.interOp : '-',
                    r.mode,
                    r.batch,
                    r.p50Ms,
                    r.p99Ms,
                    r.itemsPerSec,
                  ]),
                ) +
                `\nchosen threads: ${p.threads.reason}\n`
              : '') +
            '\n',
        );
      }
    }),
  );
}
