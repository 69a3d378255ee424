// Batch jobs: run a model over every line of a JSONL file of tensors and write one JSONL result
// line per input line, in input order. A job survives the crash of the process running it: its
// metadata lives in the KV bucket `flotilla_<cluster>_jobs` (key: job id) and each finished line's
// result in the stream `flotilla_<cluster>_jobresults` (subject `flotilla.<cluster>.jobs.<id>.results`;
// the names are protocol's `Subjects.jobBucket`, `jobStream`, `jobResults`), so `resumeJob` sends
// only the lines without a result and rewrites the output file complete.
//
// Input line i (0-based, split on '\n', a trailing '\r' dropped, no line after a final '\n') is one
// tensor JSON object `{ "<input>": { "dtype", "dims", "data" } }`. Output line i is
// `{ "line": i, "outputs": { ...tensor JSON... } }` or `{ "line": i, "error": { "code", "message" } }`.
// A result message is msgpack `{ v, line, outputs }` or `{ v, line, error }` with headers
// `Flotilla-Line` and `Flotilla-Status` (`ok` or the error code), so status reads headers only.
// A result too large for one message (over the server's max_payload, up to the inference body
// limit) is kept in the object store `flotilla_<cluster>_jobobjects` as `<id>.<line>` and its
// message is `{ v, line, object: { name, size } }`. Records and results read back are validated
// (job-records.ts); the files a job reads and writes come from the local record written at submit
// or from the resuming command, never from the cluster.
// Everything here needs JetStream (server 2.9 is enough: file storage, max_age, one filter subject).
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, constants, rename, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { headers as natsHeaders, nanos, nuid, type NatsConnection } from '@nats-io/nats-core';
import {
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { ObjectStore } from '@nats-io/obj';
import { mapNatsError, maxPayload, objectChunkSize, objectStores } from '@flotilla/bus';
import {
  BadRequestError,
  DEFAULT_MAX_MESSAGE_BYTES,
  DTYPES,
  ErrorCode,
  ForbiddenError,
  NotFoundError,
  PROTOCOL_VERSION,
  UnavailableError,
  assertValidName,
  decode,
  elementCount,
  encode,
  fromJsonTensor,
  toFlotillaError,
  toJsonTensor,
  subjects,
  type Subjects,
  type WireTensor,
  type WireTensors,
} from '@flotilla/protocol';
import type { FlotillaClient, InferOptions } from '@flotilla/client';
import { OversizedLine, countJobLines, readJobLines } from './job-lines.js';
import {
  JOB_ID_RE,
  MAX_JOB_CONCURRENCY,
  MAX_JOB_LINES,
  MAX_JOB_TIMEOUT_MS,
  defaultJobStateDir,
  localRecordPath,
  parseJobRecord,
  parseJobResult,
  readLocalRecord,
  resultObjectName,
  resultStatus,
  writeLocalRecord,
  type JobLocalRecord,
  type JobMeta,
  type StoredJobResult,
} from './job-records.js';

/** Results and job records are kept this long. */
export const JOB_RETENTION_MS = 7 * 24 * 3600 * 1000;
export const DEFAULT_JOB_CONCURRENCY = 32;
const LINE_HEADER = 'Flotilla-Line';
const STATUS_HEADER = 'Flotilla-Status';
/** Room left under the server's max_payload for headers and framing of a result message. */
const RESULT_HEADROOM_BYTES = 4096;
/** Largest result of one line, bytes (the inference body limit): larger is recorded as PAYLOAD_TOO_LARGE. */
export const DEFAULT_MAX_JOB_RESULT_BYTES = DEFAULT_MAX_MESSAGE_BYTES;
/** Elements of a tensor turned into JSON text at once when writing the output (bounded strings). */
const JSON_CHUNK_ELEMENTS = 64 * 1024;

export interface JobLineResult {
  line: number;
  outputs?: WireTensors;
  error?: { code: string; message: string };
}

export interface JobProgress {
  id: string;
  total: number;
  /** Lines with a result (ok + failed), earlier runs included. */
  done: number;
  ok: number;
  failed: number;
  /** Lines done before this run started (a resume). */
  doneBefore: number;
  /** Requests sent by this run. */
  sent: number;
  elapsedMs: number;
}

export interface JobRunOptions {
  /** Requests kept in flight. Default 32 (or, on resume, the job's). */
  concurrency?: number;
  /** Deadline of each request, ms (default the client's, or on resume the job's). */
  timeoutMs?: number;
  /**
   * Extra attempts of a line's request after a retryable failure (an OVERLOADED, UNAVAILABLE or
   * NO_CAPACITY reply, or no reply within the attempt timeout), within `timeoutMs`: the client's
   * own retries (`InferOptions.retries`), the only ones. Default 2.
   */
  retries?: number;
  /** Stops starting lines; lines in flight finish and are recorded; no output is written. */
  signal?: AbortSignal;
  /** Stop like `signal` once this run has recorded this many results (tests: a simulated crash). */
  stopAfter?: number;
  /** Called once the job is set up, before any request (the id is known: print it). */
  onStart?: (meta: JobMeta, progress: JobProgress) => void;
  /** Called after each recorded result. */
  onProgress?: (progress: JobProgress) => void;
  /** Called just before the request for `line` is sent (tests count resends with it). */
  onRequest?: (line: number) => void;
  /** Largest result of one line, bytes; larger is recorded as PAYLOAD_TOO_LARGE. Default 256 MiB (the inference body limit). */
  maxResultBytes?: number;
  /** Where local job records are kept. Default `$FLOTILLA_CACHE_DIR/jobs`, else `~/.cache/flotilla/jobs`. */
  stateDir?: string;
}

export interface SubmitJobOptions extends JobRunOptions {
  model: string;
  /** JSONL file, one tensor JSON object per line. */
  input: string;
  /** JSONL file written, complete and in input order, when the job finishes. */
  output: string;
}

export interface ResumeJobOptions extends JobRunOptions {
  /**
   * Output file to write. Default: the one in this machine's local record of the job (written at
   * submit); never the path in the cluster's record, which any bus client can rewrite.
   */
  output?: string;
  /** Input file (must be the submitted one: same lines, same sha256). Default: the local record's. */
  input?: string;
}

export interface JobSummary {
  id: string;
  model: string;
  input: string;
  output: string;
  total: number;
  ok: number;
  failed: number;
  remaining: number;
  /** Failed lines per error code. */
  errored: Record<string, number>;
  /** All lines have a result and the output file is written. */
  complete: boolean;
  /** Stopped by `signal` or `stopAfter` before all lines were done (resume it). */
  interrupted: boolean;
  /** Requests sent and results recorded by this run. */
  sent: number;
  recorded: number;
  elapsedMs: number;
  /** Results recorded per second by this run. */
  linesPerSec: number;
}

export interface JobStatus {
  id: string;
  model: string;
  input: string;
  output: string;
  created: string;
  finished?: string;
  total: number;
  done: number;
  ok: number;
  failed: number;
  remaining: number;
  errored: Record<string, number>;
  /** `output-pending`: every line has a result but the output file was not written (resume writes it). */
  state: 'complete' | 'incomplete' | 'output-pending';
}

// ---------------------------------------------------------------------------------------------
// Storage: the KV bucket of job records and the stream of results.

class JobStore {
  /** The job bucket, stream and object store names (`jobBucket`, `jobStream`, `jobObjectBucket`). */
  readonly names: Subjects;
  readonly js: JetStreamClient;
  private objectStore?: Promise<ObjectStore>;

  private constructor(
    readonly nc: NatsConnection,
    readonly cluster: string,
    readonly kv: KV,
  ) {
    this.names = subjects(cluster);
    this.js = jetstream(nc);
  }

  /** Opens the job storage; `create` makes the bucket and stream when missing (submit). */
  static async open(client: FlotillaClient, create: boolean): Promise<JobStore> {
    const nc = await client.connection();
    const names = client.subjects;
    try {
      const kvm = new Kvm(jetstream(nc));
      if (!create) {
        const kv = await kvm.open(names.jobBucket).catch((err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
        if (!kv) throw new NotFoundError(`cluster '${client.subjects.cluster}' has no jobs (no bucket ${names.jobBucket})`);
        return new JobStore(nc, client.subjects.cluster, kv);
      }
      const jsm = await jetstreamManager(nc);
      try {
        await jsm.streams.info(names.jobStream);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await jsm.streams
          .add({
            name: names.jobStream,
            subjects: [names.jobResultsAll],
            storage: StorageType.File,
            retention: RetentionPolicy.Limits,
            discard: DiscardPolicy.Old,
            max_age: nanos(JOB_RETENTION_MS),
            duplicate_window: nanos(120_000),
            num_replicas: 1,
          })
          .catch(async (e: unknown) => {
            // Another submitter created it meanwhile: fine if it is there now.
            await jsm.streams.info(names.jobStream).catch(() => Promise.reject(e));
          });
      }
      const kv = await kvm.create(names.jobBucket, { history: 1, ttl: JOB_RETENTION_MS, storage: StorageType.File });
      return new JobStore(nc, client.subjects.cluster, kv);
    } catch (err) {
      if (err instanceof NotFoundError) throw err;
      const mapped = mapNatsError(err, names.jobStream, 0);
      if (mapped instanceof ForbiddenError) throw mapped; // credentials without the jobs (a caller's): not retryable
      throw new UnavailableError(`job storage (JetStream) is not available: ${(err as Error).message}`, { cause: err });
    }
  }

  async putMeta(meta: JobMeta): Promise<void> {
    await this.kv.put(meta.id, JSON.stringify(meta));
  }

  /** The object store of large results (file storage, kept as long as the results). */
  private objects(): Promise<ObjectStore> {
    this.objectStore ??= objectStores(this.js)
      .then((stores) => stores.create(this.names.jobObjectBucket, { storage: StorageType.File, ttl: nanos(JOB_RETENTION_MS), replicas: 1 }))
      .catch((err: unknown) => {
        this.objectStore = undefined;
        throw new UnavailableError(`job object store ${this.names.jobObjectBucket} is not available: ${(err as Error).message}`, {
          cause: err,
        });
      });
    return this.objectStore;
  }

  /** A staged result's bytes; checks the stored size before fetching. */
  async fetchObject(ref: { name: string; size: number }, maxBytes: number): Promise<Uint8Array> {
    const os = await this.objects();
    const info = await os.info(ref.name);
    if (!info) throw new NotFoundError(`stored result ${ref.name} is missing from ${this.names.jobObjectBucket}`);
    if (info.size !== ref.size || info.size > maxBytes)
      throw new BadRequestError(`stored result ${ref.name} has ${info.size} bytes, its record says ${ref.size} (limit ${maxBytes})`);
    const data = await os.getBlob(ref.name);
    if (!data) throw new NotFoundError(`stored result ${ref.name} is missing from ${this.names.jobObjectBucket}`);
    return data;
  }

  async getMeta(id: string): Promise<JobMeta> {
    if (!JOB_ID_RE.test(id)) throw new BadRequestError(`invalid job id ${JSON.stringify(id)}`);
    const e = await this.kv.get(id).catch((err: unknown) => {
      if (isNotFound(err)) return null; // no bucket: this cluster never had a job
      throw new UnavailableError(`cannot read job '${id}': ${(err as Error).message}`, { cause: err });
    });
    if (!e || e.operation !== 'PUT' || e.length === 0)
      throw new NotFoundError(`no job '${id}' in cluster '${this.cluster}' (jobs are kept 7 days)`);
    return parseJobRecord(e.string(), id);
  }

  /**
   * Records one line's result; resolves once JetStream has stored it. A result over the server's
   * max_payload goes to the object store first (up to `maxResultBytes`; larger: PAYLOAD_TOO_LARGE).
   */
  async record(id: string, r: JobLineResult, maxResultBytes: number): Promise<void> {
    let body = encode(
      r.error ? { v: PROTOCOL_VERSION, line: r.line, error: r.error } : { v: PROTOCOL_VERSION, line: r.line, outputs: r.outputs },
    );
    let status = r.error ? r.error.code : 'ok';
    const limit = maxPayload(this.nc) - RESULT_HEADROOM_BYTES;
    if (body.byteLength > maxResultBytes) {
      const error = {
        code: ErrorCode.PAYLOAD_TOO_LARGE,
        message: `result of ${body.byteLength} bytes exceeds the job result limit of ${maxResultBytes} bytes`,
      };
      body = encode({ v: PROTOCOL_VERSION, line: r.line, error });
      status = error.code;
    } else if (body.byteLength > limit) {
      const name = resultObjectName(id, r.line);
      const os = await this.objects();
      await os.putBlob({ name, options: { max_chunk_size: objectChunkSize(this.nc) } }, body);
      body = encode({ v: PROTOCOL_VERSION, line: r.line, object: { name, size: body.byteLength } });
    }
    const h = natsHeaders();
    h.set(LINE_HEADER, String(r.line));
    h.set(STATUS_HEADER, status);
    await this.js.publish(this.names.jobResults(id), body, {
      msgID: `${id}.${r.line}`,
      headers: h,
      expect: { streamName: this.names.jobStream },
    });
  }

  /**
   * Calls `each` for every stored result of the job, in stream order (duplicates included).
   * `headersOnly` leaves the payloads on the server (status, resume's first pass).
   */
  async scan(id: string, headersOnly: boolean, each: (m: JsMsg) => void | Promise<void>): Promise<void> {
    const consumer = await this.js.consumers.get(this.names.jobStream, {
      filter_subjects: this.names.jobResults(id),
      headers_only: headersOnly,
    });
    try {
      const pending = (await consumer.info(true)).num_pending;
      if (pending === 0) return;
      const messages = await consumer.consume({ max_messages: 256 });
      try {
        for await (const m of messages) {
          await each(m);
          if (m.info.pending === 0) break;
        }
      } finally {
        await messages.close().catch(() => undefined);
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  /** Which lines have a result, from headers only. */
  async progress(meta: JobMeta): Promise<{ done: Uint8Array; ok: number; failed: number; errored: Record<string, number> }> {
    const done = new Uint8Array(meta.total);
    let ok = 0;
    let failed = 0;
    const errored: Record<string, number> = {};
    await this.scan(meta.id, true, (m) => {
      const line = Number(m.headers?.get(LINE_HEADER));
      const status = resultStatus(m.headers?.get(STATUS_HEADER));
      if (!Number.isInteger(line) || line < 0 || line >= meta.total || done[line]) return;
      done[line] = 1;
      if (status === 'ok') ok++;
      else {
        failed++;
        errored[status] = (errored[status] ?? 0) + 1;
      }
    });
    return { done, ok, failed, errored };
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: unknown; api_error?: { err_code?: number } } | null;
  if (!e) return false;
  // JetStream API: 10059 stream not found.
  if ((e as { code?: unknown }).code === 10059 || e.api_error?.err_code === 10059) return true;
  return /not found/i.test(e.message ?? '') || e.name === 'StreamNotFoundError';
}

// ---------------------------------------------------------------------------------------------
// Input lines.

/** Counts the lines and hashes the file; a missing or unreadable file is BAD_REQUEST. */
async function scanInput(path: string): Promise<{ total: number; sha256: string }> {
  const hash = createHash('sha256');
  let total: number;
  try {
    total = await countJobLines(path, hash);
  } catch (err) {
    throw new BadRequestError(`cannot read input file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      cause: err,
    });
  }
  if (total > MAX_JOB_LINES) throw new BadRequestError(`input file ${path} has ${total} lines: a job takes at most ${MAX_JOB_LINES}`);
  return { total, sha256: hash.digest('hex') };
}

/** One input line as tensors (the `infer --input` form); BAD_REQUEST when it is not. */
export function parseJobLine(text: string): WireTensors {
  if (text.trim() === '') throw new BadRequestError('empty line: each line must be a tensor JSON object');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`line is not valid JSON: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new BadRequestError('line must be an object mapping input names to { dtype, dims, data }');
  }
  const out: WireTensors = {};
  for (const [name, t] of Object.entries(doc)) out[name] = fromJsonTensor(name, t);
  return out;
}

async function checkWritable(path: string): Promise<void> {
  try {
    await access(dirname(path), constants.W_OK);
  } catch (err) {
    throw new BadRequestError(`cannot write output file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      cause: err,
    });
  }
}

function checkRunOptions(o: JobRunOptions): void {
  const bad = (what: string, v: unknown) => new BadRequestError(`${what} must be ${v}`);
  if (o.concurrency !== undefined && !(Number.isInteger(o.concurrency) && o.concurrency >= 1 && o.concurrency <= MAX_JOB_CONCURRENCY)) {
    throw bad('concurrency', `an integer in [1, ${MAX_JOB_CONCURRENCY}], got ${o.concurrency}`);
  }
  if (o.timeoutMs !== undefined && !(Number.isFinite(o.timeoutMs) && o.timeoutMs > 0 && o.timeoutMs <= MAX_JOB_TIMEOUT_MS)) {
    throw bad('timeout', `a number of ms in (0, ${MAX_JOB_TIMEOUT_MS}], got ${o.timeoutMs}`);
  }
  if (o.maxResultBytes !== undefined && !(Number.isInteger(o.maxResultBytes) && o.maxResultBytes >= 1024))
    throw bad('maxResultBytes', `an integer ≥ 1024, got ${o.maxResultBytes}`);
  if (o.retries !== undefined && !(Number.isInteger(o.retries) && o.retries >= 0))
    throw bad('retries', `a non-negative integer, got ${o.retries}`);
  if (o.stopAfter !== undefined && !(Number.isInteger(o.stopAfter) && o.stopAfter >= 0))
    throw bad('stopAfter', `a non-negative integer, got ${o.stopAfter}`);
}

// ---------------------------------------------------------------------------------------------
// Running.

/**
 * Starts a job: checks the files, stores the job record, sends every line with `concurrency`
 * requests in flight, records each result in JetStream, then writes the output file in input
 * order. A failed line is recorded with its error code and the job goes on. Throws only for
 * problems of the whole job (bad options or files, no JetStream, unknown model, storage failing
 * mid-run: then resume it).
 */
export async function submitJob(client: FlotillaClient, opts: SubmitJobOptions): Promise<JobSummary> {
  checkRunOptions(opts);
  assertValidName('model', opts.model);
  const input = resolve(opts.input);
  const output = resolve(opts.output);
  if (input === output) throw new BadRequestError('input and output must be different files');
  const { total, sha256 } = await scanInput(input);
  await checkWritable(output);
  // An unknown model would fail every line: fail once instead (other control errors: go on, the
  // model may still answer without a head).
  await client.describe(opts.model).catch((err: unknown) => {
    if ((err as { code?: unknown }).code === ErrorCode.UNKNOWN_MODEL) throw err;
  });
  const store = await JobStore.open(client, true);
  const meta: JobMeta = {
    id: nuid.next(),
    model: opts.model,
    input,
    output,
    total,
    inputSha256: sha256,
    created: new Date().toISOString(),
    concurrency: opts.concurrency ?? DEFAULT_JOB_CONCURRENCY,
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  };
  // The paths a resume on this machine uses: kept here, not taken back from the cluster.
  const local: JobLocalRecord = {
    v: 1,
    id: meta.id,
    cluster: store.cluster,
    model: meta.model,
    input,
    output,
    total,
    inputSha256: sha256,
    created: meta.created,
  };
  await writeLocalRecord(opts.stateDir ?? defaultJobStateDir(), local);
  await store.putMeta(meta);
  return run(client, store, meta, new Uint8Array(total), { ok: 0, failed: 0, errored: {} }, opts);
}

/**
 * Finishes a job: reads which lines already have a result, sends only the others, then rewrites
 * the output file complete and in order from the stored results. Options default to the job's.
 * Files: `opts.input` / `opts.output`, else those of this machine's local record of the job (see
 * job-records.ts); the paths in the cluster's record are never used (any bus client can rewrite
 * it). Without a local record both must be given. A cluster record that disagrees with the local
 * one (model, lines, input hash) is refused.
 */
export async function resumeJob(client: FlotillaClient, id: string, opts: ResumeJobOptions = {}): Promise<JobSummary> {
  checkRunOptions(opts);
  const store = await JobStore.open(client, false);
  const stored = await store.getMeta(id);
  const stateDir = opts.stateDir ?? defaultJobStateDir();
  const local = await readLocalRecord(stateDir, store.cluster, id);
  if (local && (local.model !== stored.model || local.total !== stored.total || local.inputSha256 !== stored.inputSha256)) {
    throw new BadRequestError(
      `job ${id}: the cluster's record (model ${stored.model}, ${stored.total} lines) differs from the one kept at submit (model ${local.model}, ${local.total} lines, ` +
        `${localRecordPath(stateDir, store.cluster, id)}): refusing to resume`,
      { data: { jobId: id } },
    );
  }
  const missing = (flag: string) =>
    new BadRequestError(
      `job ${id}: no local record at ${localRecordPath(stateDir, store.cluster, id)} (submitted from another machine, user or cache dir): give the ${flag} file`,
      { data: { jobId: id } },
    );
  const input = opts.input !== undefined ? resolve(opts.input) : local?.input;
  const output = opts.output !== undefined ? resolve(opts.output) : local?.output;
  if (input === undefined) throw missing('input');
  if (output === undefined) throw missing('output');
  if (input === output) throw new BadRequestError('input and output must be different files');
  const meta: JobMeta = { ...stored, input, output };
  const { total, sha256 } = await scanInput(input);
  if (total !== meta.total || sha256 !== meta.inputSha256) {
    throw new BadRequestError(
      `input file ${input} changed since job ${id} was submitted (${meta.total} lines then, ${total} now): cannot resume`,
    );
  }
  await checkWritable(output);
  const before = await store.progress(meta);
  return run(client, store, meta, before.done, before, {
    ...opts,
    concurrency: opts.concurrency ?? meta.concurrency,
    timeoutMs: opts.timeoutMs ?? meta.timeoutMs,
  });
}

/** A job's record and how many of its lines are done, failed and remaining. */
export async function jobStatus(client: FlotillaClient, id: string): Promise<JobStatus> {
  const store = await JobStore.open(client, false);
  const meta = await store.getMeta(id);
  const p = await store.progress(meta);
  const done = p.ok + p.failed;
  return {
    id,
    model: meta.model,
    input: meta.input,
    output: meta.output,
    created: meta.created,
    ...(meta.finished ? { finished: meta.finished } : {}),
    total: meta.total,
    done,
    ok: p.ok,
    failed: p.failed,
    remaining: meta.total - done,
    errored: p.errored,
    state: done < meta.total ? 'incomplete' : meta.finished ? 'complete' : 'output-pending',
  };
}

/** The job's record as stored. */
export async function getJob(client: FlotillaClient, id: string): Promise<JobMeta> {
  return (await JobStore.open(client, false)).getMeta(id);
}

async function run(
  client: FlotillaClient,
  store: JobStore,
  meta: JobMeta,
  done: Uint8Array,
  before: { ok: number; failed: number; errored: Record<string, number> },
  opts: JobRunOptions,
): Promise<JobSummary> {
  const start = performance.now();
  const concurrency = opts.concurrency ?? DEFAULT_JOB_CONCURRENCY;
  // Retrying is the client's (one layer): a line's request gets the job's budget as its options.
  const inferOpts: InferOptions = { retries: opts.retries ?? 2, ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }) };
  const doneBefore = before.ok + before.failed;
  let ok = before.ok;
  let failed = before.failed;
  const errored: Record<string, number> = { ...before.errored };
  let sent = 0;
  let recorded = 0;
  let stopping = false;
  let fatal: unknown;
  let inputError: unknown;
  const progress = (): JobProgress => ({
    id: meta.id,
    total: meta.total,
    done: ok + failed,
    ok,
    failed,
    doneBefore,
    sent,
    elapsedMs: performance.now() - start,
  });

  const onAbort = () => (stopping = true);
  if (opts.signal?.aborted) stopping = true;
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.stopAfter === 0) stopping = true;
  opts.onStart?.(meta, progress());

  const maxResultBytes = opts.maxResultBytes ?? DEFAULT_MAX_JOB_RESULT_BYTES;
  const infer = async (line: number, text: string | OversizedLine): Promise<JobLineResult> => {
    let inputs: WireTensors;
    try {
      if (text instanceof OversizedLine) throw new BadRequestError(`line of ${text.bytes} bytes exceeds the limit of ${text.limit} bytes`);
      inputs = parseJobLine(text);
    } catch (err) {
      const e = toFlotillaError(err);
      return { line, error: { code: e.code, message: e.message } };
    }
    opts.onRequest?.(line);
    sent++;
    try {
      const { outputs } = await client.inferWire(meta.model, inputs, inferOpts);
      return { line, outputs };
    } catch (err) {
      const e = toFlotillaError(err);
      return { line, error: { code: e.code, message: e.message } };
    }
  };

  async function* numbered(): AsyncGenerator<[number, string | OversizedLine]> {
    let i = 0;
    for await (const text of readJobLines(meta.input)) yield [i++, text];
  }
  const lines = numbered();
  const caller = async (): Promise<void> => {
    while (!stopping) {
      let next: IteratorResult<[number, string | OversizedLine]>;
      try {
        next = await lines.next();
      } catch (err) {
        inputError ??= err;
        stopping = true;
        return;
      }
      if (next.done) return;
      const [line, text] = next.value;
      if (line >= meta.total) return;
      if (done[line]) continue;
      const result = await infer(line, text);
      if (fatal) return;
      try {
        await store.record(meta.id, result, maxResultBytes);
      } catch (err) {
        // Storage is failing: this line is not recorded; stop (a resume will send it again).
        fatal ??= err;
        stopping = true;
        return;
      }
      done[line] = 1;
      recorded++;
      if (result.error) {
        failed++;
        errored[result.error.code] = (errored[result.error.code] ?? 0) + 1;
      } else ok++;
      if (opts.stopAfter !== undefined && recorded >= opts.stopAfter) stopping = true;
      opts.onProgress?.(progress());
    }
  };

  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, meta.total)) }, caller));
  } finally {
    await lines.return(undefined);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (inputError) {
    const e = inputError as NodeJS.ErrnoException;
    throw new BadRequestError(`job ${meta.id}: cannot read input file ${meta.input}: ${e.code ?? e.message}`, {
      cause: e,
      data: { jobId: meta.id },
    });
  }
  if (fatal) {
    const e = toFlotillaError(fatal);
    throw new UnavailableError(`job ${meta.id}: storing a result failed (${e.message}); resume it with the job id`, {
      cause: fatal,
      data: { jobId: meta.id },
    });
  }

  const elapsed = () => performance.now() - start;
  const summary = (w: { ok: number; failed: number; errored: Record<string, number>; complete: boolean }): JobSummary => {
    const ms = elapsed();
    return {
      id: meta.id,
      model: meta.model,
      input: meta.input,
      output: meta.output,
      total: meta.total,
      ok: w.ok,
      failed: w.failed,
      remaining: meta.total - w.ok - w.failed,
      errored: w.errored,
      complete: w.complete,
      interrupted: !w.complete && stopping,
      sent,
      recorded,
      elapsedMs: +ms.toFixed(1),
      linesPerSec: ms > 0 ? +((recorded * 1000) / ms).toFixed(1) : 0,
    };
  };

  if (ok + failed < meta.total) {
    // Interrupted: no output file yet. Figures from this run's view (resume recounts from the stream).
    return summary({ ok, failed, errored, complete: false });
  }
  const written = await writeOutput(store, meta, maxResultBytes);
  const complete = written.ok + written.failed === meta.total;
  if (complete) await store.putMeta({ ...meta, finished: new Date().toISOString() });
  return summary({ ...written, complete });
}

/**
 * Rewrites the output file from the stored results, in line order (out-of-order results are held
 * until their turn; a repeated line keeps its first result), through a temporary file renamed at
 * the end so a reader never sees half a file. A stored result that fails validation becomes that
 * line's DECODE_ERROR. Tensors are written as JSON in bounded pieces (a 256 MiB result would not
 * fit one string).
 */
async function writeOutput(
  store: JobStore,
  meta: JobMeta,
  maxResultBytes: number,
): Promise<{ ok: number; failed: number; errored: Record<string, number> }> {
  const tmp = `${meta.output}.${process.pid}.tmp`;
  const out = createWriteStream(tmp);
  const failedWrite = new Promise<never>((_, reject) => out.once('error', reject));
  failedWrite.catch(() => undefined);
  const write = async (s: string): Promise<void> => {
    if (!out.write(s)) await Promise.race([new Promise<void>((r) => out.once('drain', () => r())), failedWrite]);
  };
  const seen = new Uint8Array(meta.total);
  const held = new Map<number, JobLineResult>();
  let next = 0;
  let ok = 0;
  let failed = 0;
  const errored: Record<string, number> = {};
  const emit = async (r: JobLineResult): Promise<void> => {
    if (r.error) {
      failed++;
      errored[r.error.code] = (errored[r.error.code] ?? 0) + 1;
      await write(JSON.stringify({ line: r.line, error: { code: r.error.code, message: r.error.message } }) + '\n');
    } else {
      ok++;
      await writeResultLine(r.line, r.outputs ?? {}, write);
    }
  };
  try {
    await store.scan(meta.id, false, async (m) => {
      const headerLine = Number(m.headers?.get(LINE_HEADER));
      let r: JobLineResult;
      try {
        r = await loadResult(store, meta, m.data, maxResultBytes);
      } catch (err) {
        // Unreadable: the header still says which line it was for (progress counted it done).
        if (!Number.isInteger(headerLine) || headerLine < 0 || headerLine >= meta.total) return;
        const e = toFlotillaError(err);
        r = { line: headerLine, error: { code: ErrorCode.DECODE_ERROR, message: `stored result unreadable: ${e.message.slice(0, 500)}` } };
      }
      if (seen[r.line]) return;
      seen[r.line] = 1;
      held.set(r.line, r);
      while (held.has(next)) {
        const h = held.get(next)!;
        held.delete(next++);
        await emit(h);
      }
    });
    // Lines without a result (only if results expired or were removed): the rest in order.
    for (const line of [...held.keys()].sort((a, b) => a - b)) await emit(held.get(line)!);
    await Promise.race([new Promise<void>((r, j) => out.end((err?: Error | null) => (err ? j(err) : r()))), failedWrite]);
    await rename(tmp, meta.output);
  } catch (err) {
    out.destroy();
    await rm(tmp, { force: true });
    throw err;
  }
  return { ok, failed, errored };
}

/** A stored result message, validated, with a staged result fetched from the object store. */
async function loadResult(store: JobStore, meta: JobMeta, data: Uint8Array, maxResultBytes: number): Promise<JobLineResult> {
  const r: StoredJobResult = parseJobResult(decode<unknown>(data), meta.id, meta.total, maxResultBytes);
  if (!('object' in r)) return r;
  const full = parseJobResult(decode<unknown>(await store.fetchObject(r.object, maxResultBytes)), meta.id, meta.total, maxResultBytes);
  if ('object' in full || full.line !== r.line) throw new BadRequestError(`stored result ${r.object.name} is not line ${r.line}'s result`);
  return full;
}

/**
 * Writes `{"line":i,"outputs":{"<name>":{"dtype","dims","data":[...]}}}` and a newline, the same
 * text as JSON.stringify of `toJsonTensor` outputs, with each tensor's data in pieces.
 */
async function writeResultLine(line: number, outputs: WireTensors, write: (s: string) => Promise<void>): Promise<void> {
  await write(`{"line":${line},"outputs":{`);
  let first = true;
  for (const [name, t] of Object.entries(outputs)) {
    await write(`${first ? '' : ','}${JSON.stringify(name)}:{"dtype":${JSON.stringify(t.dtype)},"dims":${JSON.stringify(t.dims)},"data":[`);
    first = false;
    await writeTensorData(t, write);
    await write(']}');
  }
  await write('}}\n');
}

async function writeTensorData(t: WireTensor, write: (s: string) => Promise<void>): Promise<void> {
  const { bytes } = DTYPES[t.dtype];
  const count = elementCount(t.dims);
  for (let i = 0; i < count; i += JSON_CHUNK_ELEMENTS) {
    const n = Math.min(JSON_CHUNK_ELEMENTS, count - i);
    const piece: WireTensor = { dtype: t.dtype, dims: [n], data: t.data.subarray(i * bytes, (i + n) * bytes) };
    const text = JSON.stringify(toJsonTensor(piece).data);
    await write((i > 0 ? ',' : '') + text.slice(1, -1));
  }
}
