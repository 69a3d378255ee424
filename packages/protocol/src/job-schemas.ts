// Schemas of what a batch job keeps (packages/jobs): its record in the jobs KV bucket (JSON), the
// local record on the submitting machine (JSON), and each line's result on the results stream
// (msgpack). Anything on the bus may rewrite the first and the third, so every read parses them.
import { z } from 'zod';
import { Name } from './deploy-spec.js';
import { PROTOCOL_VERSION } from './version.js';

/** Job ids: nuid (22 characters) or any token of up to 64. */
export const JOB_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** Most lines a job may have (the run keeps one byte per line). */
export const MAX_JOB_LINES = 100_000_000;
/** Most requests a job keeps in flight. */
export const MAX_JOB_CONCURRENCY = 10_000;
/** Longest deadline of a job's requests, ms. */
export const MAX_JOB_TIMEOUT_MS = 3_600_000;
/** Longest file path a job record holds. */
export const MAX_JOB_PATH_CHARS = 4096;
/** Error codes as a result stores them (and status headers carry them). */
export const ERROR_CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;

const JobId = z.string().regex(JOB_ID_RE, 'use 1-64 letters, digits, _ or -');
const Path = z.string().max(MAX_JOB_PATH_CHARS);
const Time = z.string().max(64);
const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in hex');
const Lines = z.number().int().min(0).max(MAX_JOB_LINES);

/** The jobs KV bucket's record of a job (JSON). Its paths are shown by `job status`, never used for I/O. */
export const JobRecord = z
  .object({
    id: JobId,
    model: Name,
    /** Absolute paths on the submitting machine, as it reported them. */
    input: Path,
    output: Path,
    /** Lines in the input file. */
    total: Lines,
    /** sha256 of the input file: a resume refuses a file that changed. */
    inputSha256: Sha256,
    /** ISO time. */
    created: Time,
    /** Run settings, reused by a resume unless it overrides them. */
    concurrency: z.number().int().min(1).max(MAX_JOB_CONCURRENCY),
    timeoutMs: z.number().gt(0).max(MAX_JOB_TIMEOUT_MS).optional(),
    /** ISO time the complete output file was last written. */
    finished: Time.optional(),
  })
  .strict();
export type JobRecord = z.infer<typeof JobRecord>;

/** What the submitting machine keeps per job: the only paths a resume without --input/--output uses. */
export const JobLocalRecord = JobRecord.pick({
  id: true,
  model: true,
  input: true,
  output: true,
  total: true,
  inputSha256: true,
  created: true,
})
  .extend({ v: z.literal(1), cluster: Name })
  .strict();
export type JobLocalRecord = z.infer<typeof JobLocalRecord>;

/**
 * One line's result on the results stream (msgpack): exactly one of `outputs` (tensors, checked
 * by the reader), `error`, or `object` (a result too large for one message, in the job object store).
 */
export const JobResultMessage = z
  .object({
    v: z.literal(PROTOCOL_VERSION),
    line: Lines,
    outputs: z.record(z.string().max(256), z.unknown()).optional(),
    error: z
      .object({ code: z.string().regex(ERROR_CODE_RE, 'an error code'), message: z.string().max(4096) })
      .strict()
      .optional(),
    object: z
      .object({ name: z.string().max(200), size: z.number().int().min(0) })
      .strict()
      .optional(),
  })
  .strict()
  .refine((r) => [r.outputs, r.error, r.object].filter((x) => x !== undefined).length === 1, {
    message: 'exactly one of outputs, error, object must be present',
  });
export type JobResultMessage = z.infer<typeof JobResultMessage>;
