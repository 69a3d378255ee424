// `flotilla load`: a closed-loop load run against a deployed model (like Triton's perf_analyzer),
// to size a cluster: throughput and latency percentiles at a given concurrency.
import type { Command } from 'commander';
import { FlotillaClient } from '@flotilla/client';
import { runLoad, type LoadSummary } from '@flotilla/loadgen';
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

/** Exit code of a finished run: 0 when any request succeeded, else the code of the commonest error. */
export function loadExitCode(s: LoadSummary): number {
  if (s.ok > 0 || s.sent === 0) return 0;
  const worst = Object.entries(s.errored).sort((a, b) => b[1] - a[1])[0];
  return worst ? (EXIT_CODES[worst[0]] ?? 1) : 1;
}

export function loadCommand(program: Command): void {
  withConnectionOptions(
    program
      .command('load <model>')
      .description('closed-loop load: keep C requests in flight for S seconds, then print throughput and latency percentiles')
      .requiredOption('--input <file>', 'tensor JSON sent in every request (dims[0] of the first input counts as items)')
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
  ).action(async (model: string, o) => {
    const json = !!o.json;
    const { cluster, ...bus } = busOptions(o);
    const client = new FlotillaClient({ ...bus, cluster, reconnectForever: false });
    try {
      const inputs = await readTensorFile(o.input);
      const durationMs = Math.round(o.duration * 1000);
      const summary = await runLoad(client, model, inputs, {
        concurrency: o.concurrency,
        durationMs,
        timeoutMs: o.timeout,
        retries: o.retries,
        onProgress: json
          ? undefined
          : (s) =>
              process.stderr.write(
                `  ${(s.elapsedMs / 1000).toFixed(1)} s: ok ${s.ok}, errored ${erroredText(s.errored)}, ${s.requestsPerSec.toFixed(1)} req/s, p50 ${ms(s.latencyMs.p50)}\n`,
              ),
      });
      if (json) process.stdout.write(JSON.stringify({ model, concurrency: o.concurrency, durationMs, ...summary }, null, 2) + '\n');
      else process.stdout.write(loadSummaryText(model, o.concurrency, durationMs, summary));
      process.exitCode = loadExitCode(summary);
    } catch (err) {
      process.exitCode = reportError(err, json);
    } finally {
      await client.close();
    }
  });
}
