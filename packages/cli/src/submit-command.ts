// `flotilla submit` (a batch job over a JSONL file of tensors) and `flotilla job status|resume`.
// The job logic lives in `@flotilla/jobs`; this file prints: the job id at
// start (stderr, so the job can be resumed after a crash), a progress bar (stderr, TTY only, not
// with --json), the summary (stdout) and errors with their exit codes.
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { FlotillaClient } from '@flotilla/client';
import {
  jobStatus,
  resumeJob,
  submitJob,
  type JobMeta,
  type JobProgress,
  type JobRunOptions,
  type JobStatus,
  type JobSummary,
} from '@flotilla/jobs';
import { busOptions, withConnectionOptions, type ConnectionFlags } from './connection-options.js';
import { EXIT_CODES, reportError } from './format.js';

const num = (v: string) => Number(v);
const EXIT_INTERRUPTED = 130;
/** Without a TTY (logs, CI) and without --json: one progress line this often. */
const PLAIN_PROGRESS_MS = 5000;

function erroredText(errored: Record<string, number>): string {
  const parts = Object.entries(errored).map(([code, n]) => `${code} ${n}`);
  return parts.length ? parts.join(', ') : 'none';
}

const resumeHint = (id: string) => `flotilla job resume ${id} (with the same --nats/--cluster)`;

/** Exit code of a finished job: 0 when any line succeeded (or none failed), else the commonest error's. */
export function jobExitCode(s: { ok: number; failed: number; errored: Record<string, number> }): number {
  if (s.ok > 0 || s.failed === 0) return 0;
  const worst = Object.entries(s.errored).sort((a, b) => b[1] - a[1])[0];
  return worst ? (EXIT_CODES[worst[0]] ?? 1) : 1;
}

export function jobSummaryText(s: JobSummary): string {
  const head = s.complete ? `job ${s.id} complete` : `job ${s.id} incomplete`;
  const secs = s.elapsedMs / 1000;
  return [
    `${head}: ${s.total} lines, ${s.ok} ok, ${s.failed} failed (${erroredText(s.errored)}), ${s.remaining} remaining`,
    `this run: ${s.recorded} lines (${s.sent} requests) in ${secs.toFixed(2)} s, ${s.linesPerSec.toFixed(1)} lines/s`,
    s.complete ? `wrote ${s.output}` : `resume with: ${resumeHint(s.id)}`,
    '',
  ].join('\n');
}

export function jobStatusText(s: JobStatus): string {
  return [
    `job      ${s.id}`,
    `model    ${s.model}`,
    `input    ${s.input}`,
    `output   ${s.output}`,
    `created  ${s.created}`,
    `finished ${s.finished ?? '-'}`,
    `lines    ${s.total}: done ${s.done} (ok ${s.ok}, failed ${s.failed}), remaining ${s.remaining}`,
    `errors   ${erroredText(s.errored)}`,
    `state    ${s.state}${s.state !== 'complete' ? ` (resume with: ${resumeHint(s.id)})` : ''}`,
    '',
  ].join('\n');
}

/** Progress on stderr: a bar on a TTY, a line every few seconds otherwise, nothing with --json. */
class Progress {
  private bar?: cliProgress.SingleBar;
  private timer?: NodeJS.Timeout;
  private last?: JobProgress;

  constructor(
    private readonly json: boolean,
    private readonly concurrency: number | undefined,
  ) {}

  start(meta: JobMeta, p: JobProgress, resumed: boolean): void {
    const what = resumed
      ? `resuming ${meta.model} over ${meta.total} lines (${p.done} already done)`
      : `${meta.model} over ${meta.total} lines`;
    process.stderr.write(`job ${meta.id}: ${what}, ${meta.input} → ${meta.output}\n`);
    process.stderr.write(`  if this stops, resume with: ${resumeHint(meta.id)}\n`);
    this.last = p;
    if (this.json) return;
    if (process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          format: '{bar} {percentage}% | {value}/{total} lines | {rate} lines/s | failed {failed} | ETA {eta_formatted}',
          stream: process.stderr,
          hideCursor: true,
          etaBuffer: Math.max(50, 4 * (this.concurrency ?? 32)),
          fps: 10,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(meta.total, p.done, { rate: '0.0', failed: p.failed });
    } else {
      this.timer = setInterval(() => {
        const q = this.last!;
        process.stderr.write(`  ${q.done}/${q.total} lines, failed ${q.failed}, ${rate(q)} lines/s, ETA ${eta(q)}\n`);
      }, PLAIN_PROGRESS_MS);
      this.timer.unref();
    }
  }

  update(p: JobProgress): void {
    this.last = p;
    this.bar?.update(p.done, { rate: rate(p), failed: p.failed });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

const rate = (p: JobProgress) => (p.elapsedMs > 0 ? ((p.done - p.doneBefore) * 1000) / p.elapsedMs : 0).toFixed(1);

function eta(p: JobProgress): string {
  const r = p.elapsedMs > 0 ? (p.done - p.doneBefore) / p.elapsedMs : 0;
  if (r <= 0) return '?';
  const s = Math.round((p.total - p.done) / r / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

interface RunFlags extends ConnectionFlags {
  concurrency?: number;
  timeout?: number;
  retries?: number;
  json?: boolean;
}

/** Runs a job (submit or resume) with progress, Ctrl-C handling, summary and exit code. */
async function runJobCommand(
  flags: RunFlags,
  resumed: boolean,
  body: (c: FlotillaClient, o: JobRunOptions) => Promise<JobSummary>,
): Promise<void> {
  const json = !!flags.json;
  const { cluster, ...bus } = busOptions(flags);
  const client = new FlotillaClient({ ...bus, cluster, reconnectForever: false });
  const progress = new Progress(json, flags.concurrency);
  const abort = new AbortController();
  let jobId: string | undefined;
  // First Ctrl-C: stop sending, let lines in flight be recorded; a second one quits at once.
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(EXIT_INTERRUPTED);
    progress.stop();
    process.stderr.write(`\nstopping: waiting for the lines in flight (Ctrl-C again to quit now)\n`);
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    const summary = await body(client, {
      concurrency: flags.concurrency,
      timeoutMs: flags.timeout,
      retries: flags.retries,
      signal: abort.signal,
      onStart: (meta, p) => {
        jobId = meta.id;
        progress.start(meta, p, resumed);
      },
      onProgress: (p) => progress.update(p),
    });
    progress.stop();
    if (json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    else process.stdout.write(jobSummaryText(summary));
    process.exitCode = summary.complete ? jobExitCode(summary) : EXIT_INTERRUPTED;
  } catch (err) {
    progress.stop();
    process.exitCode = reportError(err, json);
    if (jobId) process.stderr.write(`job ${jobId} is kept: resume with: ${resumeHint(jobId)}\n`);
  } finally {
    process.off('SIGINT', onSigint);
    await client.close();
  }
}

function withRunOptions(cmd: Command): Command {
  return cmd
    .option('--concurrency <n>', "requests kept in flight (default 32; on resume, the job's)", num)
    .option('--timeout <ms>', "deadline of each request (default 30000; on resume, the job's)", num)
    .option('--retries <n>', 'retries of a line after OVERLOADED, UNAVAILABLE or NO_CAPACITY', num, 2)
    .option('--json', 'no progress bar; print the summary as JSON');
}

export function submitCommand(program: Command): void {
  withConnectionOptions(
    withRunOptions(
      program
        .command('submit <model>')
        .description('batch job: run the model on every line of a JSONL file; survives a crash of this command (see `job resume`)')
        .requiredOption('--input <file>', 'JSONL, one tensor JSON object per line: { "<input>": { "dtype", "dims", "data" } }')
        .requiredOption(
          '--output <file>',
          'JSONL written in input order: { "line": i, "outputs": {...} } or { "line": i, "error": { "code", "message" } } (i from 0)',
        ),
    ),
  ).action(async (model: string, o) =>
    runJobCommand(o, false, (client, run) => submitJob(client, { ...run, model, input: o.input, output: o.output })),
  );

  const job = program.command('job').description('batch jobs started by `submit`: status, resume');

  withConnectionOptions(job.command('status <id>').description('lines done, failed and remaining').option('--json', 'print JSON')).action(
    async (id: string, o) => {
      const { cluster, ...bus } = busOptions(o);
      const client = new FlotillaClient({ ...bus, cluster, reconnectForever: false });
      try {
        const s = await jobStatus(client, id);
        if (o.json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
        else process.stdout.write(jobStatusText(s));
      } catch (err) {
        process.exitCode = reportError(err, !!o.json);
      } finally {
        await client.close();
      }
    },
  );

  withConnectionOptions(
    withRunOptions(
      job
        .command('resume <id>')
        .description(
          'send the lines without a result, then rewrite the output file complete and in order; files come from --input/--output or from ' +
            'the record kept on this machine at submit ($FLOTILLA_CACHE_DIR/jobs or ~/.cache/flotilla/jobs), never from the cluster',
        )
        .option('--output <file>', 'write the output here (default: the output given at submit, as recorded on this machine)')
        .option('--input <file>', 'the submitted input file (default: as recorded on this machine); must be unchanged'),
    ),
  ).action(async (id: string, o) =>
    runJobCommand(o, true, (client, run) => resumeJob(client, id, { ...run, output: o.output, input: o.input })),
  );
}
