// What a batch job keeps, and the checks on reading it back. Anything on the bus may rewrite a
// job's KV record or publish on its results subject, so both are validated on every read
// (`parseJobRecord`, `parseJobResult`: a malformed one is a coded error, never a crash), and the
// files a job reads and writes come only from the local record written at submit
// (`<state dir>/<cluster>/<id>.json`) or from the resuming command's own arguments.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  BadRequestError,
  DTYPES,
  ErrorCode,
  MAX_TENSOR_ELEMENTS,
  PROTOCOL_VERSION,
  elementCount,
  isValidName,
  type WireTensors,
} from '@flotilla/protocol';

/** Job ids: nuid (22 characters) or any token of up to 64. */
export const JOB_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** Most lines a job may have (the run keeps one byte per line). */
export const MAX_JOB_LINES = 100_000_000;
/** Most requests a job keeps in flight. */
export const MAX_JOB_CONCURRENCY = 10_000;
/** Longest deadline of a job's requests, ms. */
export const MAX_JOB_TIMEOUT_MS = 3_600_000;
const MAX_PATH_CHARS = 4096;
const MAX_TIME_CHARS = 64;
const MAX_ERROR_MESSAGE_CHARS = 4096;
const CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;

/** What the KV bucket holds per job (JSON). Paths are shown by `job status`, never used for I/O. */
export interface JobMeta {
  id: string;
  model: string;
  /** Absolute paths on the submitting machine, as it reported them. */
  input: string;
  output: string;
  /** Lines in the input file. */
  total: number;
  /** sha256 of the input file: a resume refuses a file that changed. */
  inputSha256: string;
  /** ISO time. */
  created: string;
  /** Run settings, reused by a resume unless it overrides them. */
  concurrency: number;
  timeoutMs?: number;
  /** ISO time the complete output file was last written. */
  finished?: string;
}

/** One line's result as stored in the results stream (msgpack), after validation. */
export type StoredJobResult =
  | { line: number; outputs: WireTensors }
  | { line: number; error: { code: string; message: string } }
  /** A result too large for one message, kept in the job object store under `object.name`. */
  | { line: number; object: { name: string; size: number } };

type Check = (v: unknown) => string | undefined;
const str =
  (max: number, re?: RegExp): Check =>
  (v) =>
    typeof v !== 'string'
      ? 'must be a string'
      : v.length > max
        ? `must be at most ${max} characters`
        : re && !re.test(v)
          ? `does not match ${re}`
          : undefined;
const int =
  (min: number, max: number): Check =>
  (v) =>
    Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? undefined : `must be an integer in [${min}, ${max}]`;
const num =
  (min: number, max: number): Check =>
  (v) =>
    typeof v === 'number' && v > min && v <= max ? undefined : `must be a number in (${min}, ${max}]`;

/**
 * The job record schema (the KV value, JSON): every field's check; `?` marks optional ones.
 * Unknown keys are refused. (Named like a schema: it moves to `protocol` with the other message
 * schemas.)
 */
export const JobRecordSchema: Readonly<Record<string, Check>> = {
  id: str(64, JOB_ID_RE),
  model: (v) => (isValidName(v) ? undefined : 'must be a model name (1-64 letters, digits, _ or -)'),
  input: str(MAX_PATH_CHARS),
  output: str(MAX_PATH_CHARS),
  total: int(0, MAX_JOB_LINES),
  inputSha256: str(64, SHA256_RE),
  created: str(MAX_TIME_CHARS),
  concurrency: int(1, MAX_JOB_CONCURRENCY),
  'timeoutMs?': num(0, MAX_JOB_TIMEOUT_MS),
  'finished?': str(MAX_TIME_CHARS),
};

function checkObject(schema: Readonly<Record<string, Check>>, raw: unknown): string | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return '$: must be an object';
  const known = new Set<string>();
  for (const [key, check] of Object.entries(schema)) {
    const optional = key.endsWith('?');
    const name = optional ? key.slice(0, -1) : key;
    known.add(name);
    const v = (raw as Record<string, unknown>)[name];
    if (v === undefined) {
      if (optional) continue;
      return `$.${name}: is required`;
    }
    const why = check(v);
    if (why) return `$.${name}: ${why}`;
  }
  const extra = Object.keys(raw).find((k) => !known.has(k));
  return extra === undefined ? undefined : `$.${extra.slice(0, 64)}: unknown key`;
}

/** A job record read back from KV (JSON text): valid and for job `id`, else BAD_REQUEST with the path of the first problem. */
export function parseJobRecord(text: string, id: string): JobMeta {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new BadRequestError(`invalid job record '${id}': not JSON`);
  }
  const why =
    checkObject(JobRecordSchema, raw) ??
    ((raw as JobMeta).id !== id ? `$.id: is '${(raw as JobMeta).id}', stored under '${id}'` : undefined);
  if (why) throw new BadRequestError(`invalid job record '${id}': ${why}`, { data: { jobId: id } });
  return raw as JobMeta;
}

/** Checks a wire tensor from storage; a reason when it is malformed. */
function tensorProblem(t: unknown): string | undefined {
  if (t === null || typeof t !== 'object') return 'must be { dtype, dims, data }';
  const { dtype, dims, data } = t as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(DTYPES, dtype)) return 'unsupported dtype';
  if (!Array.isArray(dims) || dims.length > 64 || !dims.every((d) => Number.isSafeInteger(d) && d >= 0))
    return 'dims must be non-negative integers';
  if (!(data instanceof Uint8Array)) return 'data must be bytes';
  const count = elementCount(dims as number[]);
  if (count > MAX_TENSOR_ELEMENTS || data.byteLength !== count * DTYPES[dtype as keyof typeof DTYPES].bytes)
    return 'data does not match dims';
  return undefined;
}

/**
 * A stored result message (decoded msgpack) for job `jobId`: `{ v, line, outputs | error | object }`.
 * BAD_REQUEST names the problem; an object name must be the one this job uses for the line.
 */
export function parseJobResult(raw: unknown, jobId: string, total: number, maxObjectBytes: number): StoredJobResult {
  const bad = (why: string) => new BadRequestError(`invalid stored result of job '${jobId}': ${why}`);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('$: must be a map');
  const r = raw as Record<string, unknown>;
  if (r.v !== PROTOCOL_VERSION) throw bad(`$.v: must be ${PROTOCOL_VERSION}`);
  if (!Number.isInteger(r.line) || (r.line as number) < 0 || (r.line as number) >= total)
    throw bad(`$.line: must be an integer in [0, ${total})`);
  const line = r.line as number;
  const kinds = ['outputs', 'error', 'object'].filter((k) => r[k] !== undefined);
  if (kinds.length !== 1) throw bad('exactly one of $.outputs, $.error, $.object must be present');
  const extra = Object.keys(r).find((k) => !['v', 'line', 'outputs', 'error', 'object'].includes(k));
  if (extra !== undefined) throw bad(`$.${extra.slice(0, 64)}: unknown key`);
  if (r.error !== undefined) {
    const e = r.error as Record<string, unknown> | null;
    const why =
      e === null || typeof e !== 'object'
        ? 'must be { code, message }'
        : (str(64, CODE_RE)(e.code) ?? str(MAX_ERROR_MESSAGE_CHARS)(e.message));
    if (why) throw bad(`$.error: ${why}`);
    return { line, error: { code: e!.code as string, message: e!.message as string } };
  }
  if (r.object !== undefined) {
    const o = r.object as Record<string, unknown> | null;
    if (o === null || typeof o !== 'object' || o.name !== resultObjectName(jobId, line))
      throw bad(`$.object.name: must be '${resultObjectName(jobId, line)}'`);
    if (!Number.isInteger(o.size) || (o.size as number) < 0 || (o.size as number) > maxObjectBytes)
      throw bad(`$.object.size: must be an integer in [0, ${maxObjectBytes}]`);
    return { line, object: { name: o.name, size: o.size as number } };
  }
  const outputs = r.outputs as Record<string, unknown> | null;
  if (outputs === null || typeof outputs !== 'object' || Array.isArray(outputs) || outputs instanceof Uint8Array)
    throw bad('$.outputs: must be a map of tensors');
  for (const [name, t] of Object.entries(outputs)) {
    const why = name.length > 256 ? 'name longer than 256 characters' : tensorProblem(t);
    if (why) throw bad(`$.outputs.${name.slice(0, 64)}: ${why}`);
  }
  return { line, outputs: outputs as WireTensors };
}

/** Name of the object holding a line's result when it is too large for one message. */
export function resultObjectName(jobId: string, line: number): string {
  return `${jobId}.${line}`;
}

/** A result status header read back: `ok` or an error code; anything else counts as INTERNAL. */
export function resultStatus(header: string | undefined): string {
  return header === 'ok' || (header !== undefined && CODE_RE.test(header)) ? header : ErrorCode.INTERNAL;
}

// ---------------------------------------------------------------------------------------------
// The local record: where this machine's job reads and writes.

/** What the submitting machine keeps per job, in `<state dir>/<cluster>/<id>.json`. */
export interface JobLocalRecord {
  v: 1;
  id: string;
  cluster: string;
  model: string;
  /** Absolute paths: the only ones a resume without --input/--output uses. */
  input: string;
  output: string;
  total: number;
  inputSha256: string;
  created: string;
}

/** Where local job records live: `$FLOTILLA_CACHE_DIR/jobs`, else `~/.cache/flotilla/jobs`. */
export function defaultJobStateDir(): string {
  return join(process.env.FLOTILLA_CACHE_DIR ?? join(homedir(), '.cache', 'flotilla'), 'jobs');
}

export function localRecordPath(stateDir: string, cluster: string, id: string): string {
  return join(stateDir, cluster, `${id}.json`);
}

/** Writes the local record (owner-only, through a temporary file); BAD_REQUEST when the state dir is not writable. */
export async function writeLocalRecord(stateDir: string, rec: JobLocalRecord): Promise<string> {
  const path = localRecordPath(stateDir, rec.cluster, rec.id);
  try {
    await mkdir(join(stateDir, rec.cluster), { recursive: true, mode: 0o700 });
    await writeFile(`${path}.tmp`, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
    await rename(`${path}.tmp`, path);
  } catch (err) {
    throw new BadRequestError(
      `cannot write the job's local record ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { cause: err },
    );
  }
  return path;
}

const LocalRecordSchema: Readonly<Record<string, Check>> = {
  v: (v) => (v === 1 ? undefined : 'must be 1'),
  id: str(64, JOB_ID_RE),
  cluster: (v) => (isValidName(v) ? undefined : 'must be a cluster name'),
  model: (v) => (isValidName(v) ? undefined : 'must be a model name'),
  input: str(MAX_PATH_CHARS),
  output: str(MAX_PATH_CHARS),
  total: int(0, MAX_JOB_LINES),
  inputSha256: str(64, SHA256_RE),
  created: str(MAX_TIME_CHARS),
};

/** The local record of job `id`, or undefined when this machine has none; BAD_REQUEST when it is malformed. */
export async function readLocalRecord(stateDir: string, cluster: string, id: string): Promise<JobLocalRecord | undefined> {
  const path = localRecordPath(stateDir, cluster, id);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BadRequestError(
      `cannot read the job's local record ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { cause: err },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new BadRequestError(`invalid local job record ${path}: not JSON`);
  }
  const why = checkObject(LocalRecordSchema, raw);
  if (why) throw new BadRequestError(`invalid local job record ${path}: ${why}`);
  const rec = raw as JobLocalRecord;
  if (rec.id !== id || rec.cluster !== cluster)
    throw new BadRequestError(`invalid local job record ${path}: it is job '${rec.id}' of cluster '${rec.cluster}'`);
  return rec;
}
