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
  ERROR_CODE_RE,
  ErrorCode,
  JobLocalRecord as JobLocalRecordSchema,
  JobRecord,
  JobResultMessage,
  checkWireTensor,
  parseWith,
  type WireTensors,
} from '@flotilla/protocol';

export { JOB_ID_RE, MAX_JOB_CONCURRENCY, MAX_JOB_LINES, MAX_JOB_TIMEOUT_MS } from '@flotilla/protocol';

/** What the KV bucket holds per job (JSON; schema `JobRecord` in protocol). Paths are shown by `job status`, never used for I/O. */
export type JobMeta = JobRecord;

/** One line's result as stored in the results stream (msgpack), after validation. */
export type StoredJobResult =
  | { line: number; outputs: WireTensors }
  | { line: number; error: { code: string; message: string } }
  /** A result too large for one message, kept in the job object store under `object.name`. */
  | { line: number; object: { name: string; size: number } };

/** A job record read back from KV (JSON text): valid and for job `id`, else BAD_REQUEST with the path of the first problem. */
export function parseJobRecord(text: string, id: string): JobMeta {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new BadRequestError(`invalid job record '${id}': not JSON`);
  }
  const rec = parseWith(JobRecord, raw, `job record '${id}'`);
  if (rec.id !== id)
    throw new BadRequestError(`invalid job record '${id}': $.id: is '${rec.id}', stored under '${id}'`, { data: { jobId: id } });
  return rec;
}

/**
 * A stored result message (decoded msgpack) for job `jobId`: `{ v, line, outputs | error | object }`.
 * BAD_REQUEST names the problem; an object name must be the one this job uses for the line.
 */
export function parseJobResult(raw: unknown, jobId: string, total: number, maxObjectBytes: number): StoredJobResult {
  const r = parseWith(JobResultMessage, raw, `stored result of job '${jobId}'`);
  const bad = (why: string) => new BadRequestError(`invalid stored result of job '${jobId}': ${why}`);
  if (r.line >= total) throw bad(`$.line: must be an integer in [0, ${total})`);
  if (r.error) return { line: r.line, error: r.error };
  if (r.object) {
    if (r.object.name !== resultObjectName(jobId, r.line)) throw bad(`$.object.name: must be '${resultObjectName(jobId, r.line)}'`);
    if (r.object.size > maxObjectBytes) throw bad(`$.object.size: must be an integer in [0, ${maxObjectBytes}]`);
    return { line: r.line, object: r.object };
  }
  const outputs: WireTensors = {};
  for (const [name, t] of Object.entries(r.outputs!)) {
    try {
      outputs[name] = checkWireTensor(name, t);
    } catch (err) {
      throw bad(`$.outputs.${name.slice(0, 64)}: ${(err as Error).message}`);
    }
  }
  return { line: r.line, outputs };
}

/** Name of the object holding a line's result when it is too large for one message. */
export function resultObjectName(jobId: string, line: number): string {
  return `${jobId}.${line}`;
}

/** A result status header read back: `ok` or an error code; anything else counts as INTERNAL. */
export function resultStatus(header: string | undefined): string {
  return header === 'ok' || (header !== undefined && ERROR_CODE_RE.test(header)) ? header : ErrorCode.INTERNAL;
}

// ---------------------------------------------------------------------------------------------
// The local record: where this machine's job reads and writes.

/** What the submitting machine keeps per job, in `<state dir>/<cluster>/<id>.json` (schema `JobLocalRecord` in protocol). */
export type JobLocalRecord = JobLocalRecordSchema;

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
  const rec = parseWith(JobLocalRecordSchema, raw, `local job record ${path}`);
  if (rec.id !== id || rec.cluster !== cluster)
    throw new BadRequestError(`invalid local job record ${path}: it is job '${rec.id}' of cluster '${rec.cluster}'`);
  return rec;
}
