// `flotilla load`: a closed-loop load run against a deployed model (like Triton's perf_analyzer),
// to size a cluster: throughput and latency percentiles at a given concurrency. With `--mix FILE`
// or `--zipf S` the requests spread over several models (a user's own mix, replayed by seed).
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { FlotillaClient } from '@flotilla/client';
import { BadRequestError, DTYPES, elementCount, type ModelSignature, type WireTensors } from '@flotilla/protocol';
import {
  parseMix,
  runLoad,
  runMixLoad,
  seededRandom,
  shuffled,
  zipfWeights,
  type LoadSummary,
  type MixLoadSummary,
  type MixTarget,
} from '@flotilla/loadgen';
import { busOptions, withConnectionOptions } from './connection-options.js';
import { EXIT_CODES, reportError } from './format.js';
import { readTensorFile } from './tensor-file.js';

const num = (v: string) => Number(v);
const ms = (x: number) => `${x.toFixed(2)} ms`;

function erroredText(errored: Record<string, number>): string {
  const parts = Object.entries(errored).map(([code, n]) => `${code} ${n}`);
  return parts.length ? parts.join(', ') : 'none';
}

/** The people-facing summary. */
export function loadSummaryText(model: string, concurrency: number, durationMs: number, s: LoadSummary): string {
  const l = s.latencyMs;
  return [
    `load ${model}: concurrency ${concurrency} for ${(durationMs / 1000).toFixed(2)} s (all answered after ${(s.elapsedMs / 1000).toFixed(2)} s)`,
    `sent       ${s.sent}`,
    `ok         ${s.ok}`,
    `retried    ${s.retried}`,
    `errored    ${erroredText(s.errored)}`,
    `lost       ${s.lost}`,
    `throughput ${s.requestsPerSec.toFixed(1)} req/s, ${s.itemsPerSec.toFixed(1)} items/s`,
    `latency    p50 ${ms(l.p50)}, p90 ${ms(l.p90)}, p99 ${ms(l.p99)} (mean ${ms(l.mean)}, max ${ms(l.max)})`,
    '',
  ].join('\n');
}

/** Per-model lines of a mixed run, most requested first. */
export function mixSummaryText(s: MixLoadSummary): string {
  const rows = Object.entries(s.models).sort((a, b) => b[1].sent - a[1].sent);
  const width = Math.max(5, ...rows.map(([m]) => m.length));
  return [
    `${'model'.padEnd(width)}  ${'sent'.padStart(8)}  ${'ok'.padStart(8)}  errored  p50 ms    p99 ms`,
    ...rows.map(
      ([m, r]) =>
        `${m.padEnd(width)}  ${String(r.sent).padStart(8)}  ${String(r.ok).padStart(8)}  ${String(r.sent - r.ok - r.lost).padStart(7)}  ` +
        `${r.latencyMs.p50.toFixed(2).padStart(8)}  ${r.latencyMs.p99.toFixed(2).padStart(8)}`,
    ),
    '',
  ].join('\n');
}

/** Zeros shaped like the model's inputs (symbolic dims as 1): a request any model of the mix accepts. */
export function syntheticInputs(model: string, signature: ModelSignature | undefined): WireTensors {
  if (!signature) throw new BadRequestError(`'${model}' has no known signature yet (never loaded): give --input or a --mix file`);
  const out: WireTensors = {};
  for (const t of signature.inputs) {
    const dims = t.shape.map((d) => (typeof d === 'number' ? d : 1));
    out[t.name] = { dtype: t.dtype, dims, data: new Uint8Array(elementCount(dims) * DTYPES[t.dtype].bytes) };
  }
  return out;
}

/**
 * The targets of a mixed run: the `--mix` entries (inputs relative to the mix file), or every
 * deployed model; `--zipf S` replaces the weights by Zipf popularity — over the mix in file order,
 * or over the deployed models in an order shuffled by the seed.
 */
async function mixTargets(client: FlotillaClient, o: { mix?: string; zipf?: number; input?: string; seed: number }): Promise<MixTarget[]> {
  const common = o.input ? await readTensorFile(o.input) : undefined;
  let targets: MixTarget[];
  if (o.mix) {
    const text = await readFile(o.mix, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new BadRequestError(`cannot read mix file ${o.mix}: ${err.code ?? err.message}`);
    });
    const entries = parseMix(text);
    const files = new Map<string, WireTensors>();
    targets = [];
    for (const e of entries) {
      const path = resolve(dirname(o.mix), e.input);
      if (!files.has(path)) files.set(path, await readTensorFile(path));
      targets.push({ model: e.model, inputs: files.get(path)!, weight: e.weight });
    }
  } else {
    const deployed = (await client.list()).sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1));
    if (deployed.length === 0) throw new BadRequestError('no models are deployed');
    const order = shuffled(deployed.length, seededRandom(o.seed));
    targets = order.map((i) => {
      const d = deployed[i]!;
      return { model: d.spec.name, inputs: common ?? syntheticInputs(d.spec.name, d.signature), weight: 1 };
    });
  }
  if (o.zipf !== undefined) {
    const w = zipfWeights(targets.length, o.zipf);
    targets = targets.map((t, i) => ({ ...t, weight: w[i]! }));
  }
  return targets;
}

/** Exit code of a finished run: 0 when any request succeeded, else the code of the commonest error. */
export function loadExitCode(s: LoadSummary): number {
  if (s.ok > 0 || s.sent === 0) return 0;
  const worst = Object.entries(s.errored).sort((a, b) => b[1] - a[1])[0];
  return worst ? (EXIT_CODES[worst[0]] ?? 1) : 1;
}

export function loadCommand(program: Command): void {
  withConnectionOptions(
    program
      .command('load [model]')
      .description(
        'closed-loop load: keep C requests in flight for S seconds, then print throughput and latency percentiles; ' +
          'one model, or a mix (--mix FILE, --zipf S)',
      )
      .option('--input <file>', 'tensor JSON sent in every request (dims[0] of the first input counts as items)')
      .option(
        '--mix <file>',
        'models to spread requests over: lines "model input.json [weight]" (or a JSON array of {model, input, weight})',
      )
      .option('--zipf <s>', 'Zipf popularity with exponent S: over the --mix entries in file order, else over every deployed model', num)
      .option('--seed <n>', 'seed of the model sequence (same seed, same sequence per caller)', num, 1)
      .option('--concurrency <n>', 'requests kept in flight', num, 1)
      .option('--duration <s>', 'seconds to keep sending', num, 10)
      .option('--timeout <ms>', 'deadline of each request', num)
      .option(
        '--retries <n>',
        'extra attempts of a request after OVERLOADED, UNAVAILABLE, NO_CAPACITY or no reply within the attempt timeout, all within --timeout (the only retries)',
        num,
        2,
      )
      .option('--json', 'print the summary as one JSON object'),
  ).action(async (model: string | undefined, o) => {
    const json = !!o.json;
    const { cluster, ...bus } = busOptions(o);
    const client = new FlotillaClient({ ...bus, cluster, reconnectForever: false });
    try {
      const mixed = o.mix !== undefined || o.zipf !== undefined;
      if (mixed && model) throw new BadRequestError('give a model, or --mix / --zipf, not both');
      if (!mixed && !model) throw new BadRequestError('give a model (with --input), or --mix FILE / --zipf S');
      if (!mixed && !o.input) throw new BadRequestError('--input is required for one model');
      const durationMs = Math.round(o.duration * 1000);
      const opts = {
        concurrency: o.concurrency,
        durationMs,
        timeoutMs: o.timeout,
        retries: o.retries,
        onProgress: json
          ? undefined
          : (s: LoadSummary) =>
              process.stderr.write(
                `  ${(s.elapsedMs / 1000).toFixed(1)} s: ok ${s.ok}, errored ${erroredText(s.errored)}, ${s.requestsPerSec.toFixed(1)} req/s, p50 ${ms(s.latencyMs.p50)}\n`,
              ),
      };
      let summary: LoadSummary;
      if (mixed) {
        const targets = await mixTargets(client, o);
        const mix = await runMixLoad(client, targets, { ...opts, seed: o.seed });
        summary = mix;
        const label = `${targets.length} models`;
        if (json)
          process.stdout.write(
            JSON.stringify(
              { mix: targets.map(({ model, weight }) => ({ model, weight })), concurrency: o.concurrency, durationMs, ...mix },
              null,
              2,
            ) + '\n',
          );
        else process.stdout.write(loadSummaryText(label, o.concurrency, durationMs, mix) + mixSummaryText(mix));
      } else {
        summary = await runLoad(client, model!, await readTensorFile(o.input), opts);
        if (json) process.stdout.write(JSON.stringify({ model, concurrency: o.concurrency, durationMs, ...summary }, null, 2) + '\n');
        else process.stdout.write(loadSummaryText(model!, o.concurrency, durationMs, summary));
      }
      process.exitCode = loadExitCode(summary);
    } catch (err) {
      process.exitCode = reportError(err, json);
    } finally {
      await client.close();
    }
  });
}
