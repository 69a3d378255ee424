// Schemas of the messages replicas and workers receive: inference requests, staged-body
// references, and the head's load/unload commands. Each is parsed once at the edge; a message
// that does not match is BAD_REQUEST naming the path of the first problem. The inference request
// is checked by hand (it is on the hot path: no allocation beyond the result), the rest by zod.
import { z } from 'zod';
import { BadRequestError } from './errors.js';
import { DeploySpec } from './deploy-spec.js';
import { PROTOCOL_VERSION } from './version.js';
import { checkWireTensor, type WireTensors } from './tensor.js';

/** Longest request `id` (a string) a caller may send; it is echoed in the reply. */
export const MAX_ID_CHARS = 256;
/** Most tensors in a request's `inputs` (and names in `outputs`). */
export const MAX_TENSORS_PER_REQUEST = 256;
/** Longest tensor name. */
export const MAX_TENSOR_NAME_CHARS = 256;
/** Longest relative deadline a request may ask for, ms (one hour). */
export const MAX_REQUEST_TIMEOUT_MS = 3_600_000;

/** A request's correlation id: a string of at most MAX_ID_CHARS, or a safe integer. */
export type RequestId = string | number;

export interface ParsedInferRequest {
  id?: RequestId;
  inputs: WireTensors;
  outputs?: string[];
  timeoutMs?: number;
}

/**
 * A staged body: `{ v, blob: { name, size } }`; the name is the stager's object name (nuid). A
 * streamed one also names its chunks (`nuid`): it is sent while its sender still writes it, and its
 * receiver reads the chunks as they arrive and checks them against the meta written last. Only sent
 * to a receiver that reads streamed references: a replica (requests), a caller whose request carried
 * STREAMED_BLOBS_HEADER (replies).
 */
export interface BlobName {
  name: string;
  size: number;
  nuid?: string;
  /**
   * A direct body (direct-body.ts): not staged at all; its chunks go between the caller and the
   * replica with this id, as requests on that replica's own subject. `name` is the transfer's id.
   */
  direct?: string;
}

const BLOB_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** A direct body's replica: a replica id that is one subject token (no `.`). */
export const DIRECT_REPLICA_RE = /^[A-Za-z0-9_:-]{1,128}$/;

function bad(path: string, problem: string): BadRequestError {
  return new BadRequestError(`invalid request at ${path}: ${problem}`, { data: { path } });
}

function isMap(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Uint8Array);
}

/** The request's id if it is a valid one (for echoing in an error reply), else undefined. */
export function requestIdOf(raw: Record<string, unknown>): RequestId | undefined {
  const id = raw.id;
  if (typeof id === 'string' && id.length <= MAX_ID_CHARS) return id;
  if (typeof id === 'number' && Number.isSafeInteger(id)) return id;
  return undefined;
}

/**
 * Checks a blob reference before anything is fetched: a well-formed object name and a size that is
 * a non-negative safe integer. Whether the size is within the receiver's limit (PAYLOAD_TOO_LARGE)
 * is the receiver's check, also before fetching (`BlobStore.take`).
 */
export function parseBlobRef(raw: Record<string, unknown>): BlobName {
  for (const key in raw) if (key !== 'v' && key !== 'blob') throw bad(`$.${key.slice(0, 64)}`, 'unknown key beside `blob`');
  const blob = raw.blob;
  if (!isMap(blob)) throw bad('$.blob', 'must be a map { name, size, nuid?, direct? }');
  for (const key in blob) {
    if (key !== 'name' && key !== 'size' && key !== 'nuid' && key !== 'direct') throw bad(`$.blob.${key.slice(0, 64)}`, 'unknown key');
  }
  if (typeof blob.name !== 'string' || !BLOB_NAME_RE.test(blob.name)) throw bad('$.blob.name', 'must be 1-64 letters, digits, _ or -');
  if (typeof blob.size !== 'number' || !Number.isSafeInteger(blob.size) || blob.size < 0) {
    throw bad('$.blob.size', 'must be a non-negative integer (bytes)');
  }
  if (blob.direct !== undefined) {
    if (blob.nuid !== undefined) throw bad('$.blob', 'a direct body has no `nuid` (it is not staged)');
    if (typeof blob.direct !== 'string' || !DIRECT_REPLICA_RE.test(blob.direct)) {
      throw bad('$.blob.direct', 'must be a replica id of 1-128 letters, digits, _, : or -');
    }
    return { name: blob.name, size: blob.size, direct: blob.direct };
  }
  if (blob.nuid === undefined) return { name: blob.name, size: blob.size };
  if (typeof blob.nuid !== 'string' || !BLOB_NAME_RE.test(blob.nuid)) throw bad('$.blob.nuid', 'must be 1-64 letters, digits, _ or -');
  return { name: blob.name, size: blob.size, nuid: blob.nuid };
}

/** Validates an inference request (after decode): `{ v, id?, inputs, outputs?, timeoutMs? }`, nothing else. */
export function parseInferRequest(raw: Record<string, unknown>): ParsedInferRequest {
  for (const key in raw) {
    switch (key) {
      case 'v':
      case 'inputs':
      case 'id':
      case 'outputs':
      case 'timeoutMs':
        break;
      default:
        throw bad(`$.${key.slice(0, 64)}`, 'unknown key (a request has v, id, inputs, outputs, timeoutMs)');
    }
  }
  const inputs = raw.inputs;
  if (!isMap(inputs)) throw bad('$.inputs', 'must be a map of tensors { name: { dtype, dims, data } }');
  let n = 0;
  for (const name in inputs) {
    if (++n > MAX_TENSORS_PER_REQUEST) throw bad('$.inputs', `more than ${MAX_TENSORS_PER_REQUEST} tensors`);
    if (name.length > MAX_TENSOR_NAME_CHARS) throw bad('$.inputs', `tensor name longer than ${MAX_TENSOR_NAME_CHARS} characters`);
    const t = inputs[name];
    if (isMap(t))
      for (const k in t) if (k !== 'dtype' && k !== 'dims' && k !== 'data') throw bad(`$.inputs.${name}.${k.slice(0, 64)}`, 'unknown key');
    inputs[name] = checkWireTensor(name, t);
  }
  const out: ParsedInferRequest = { inputs: inputs as WireTensors };
  if (raw.id !== undefined) {
    const id = requestIdOf(raw);
    if (id === undefined) throw bad('$.id', `must be a string of at most ${MAX_ID_CHARS} characters or an integer`);
    out.id = id;
  }
  if (raw.outputs !== undefined) {
    const o = raw.outputs;
    if (
      !Array.isArray(o) ||
      o.length > MAX_TENSORS_PER_REQUEST ||
      !o.every((x) => typeof x === 'string' && x.length <= MAX_TENSOR_NAME_CHARS)
    ) {
      throw bad('$.outputs', `must be a list of at most ${MAX_TENSORS_PER_REQUEST} output names`);
    }
    out.outputs = o as string[];
  }
  if (raw.timeoutMs !== undefined) {
    const t = raw.timeoutMs;
    if (typeof t !== 'number' || !(t > 0) || t > MAX_REQUEST_TIMEOUT_MS)
      throw bad('$.timeoutMs', `must be a number in (0, ${MAX_REQUEST_TIMEOUT_MS}]`);
    out.timeoutMs = t;
  }
  return out;
}

/** zod's first issue as BAD_REQUEST: `<what>: <path>: <message>`, every issue in `data.issues` (bounded). */
export function parseWith<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  // Each issue as `$.path: message`, an unknown key as `$.<key>: unknown key`, cut to 160 characters
  // (a 600 KB key must not come back in the error).
  const issues = r.error.issues.slice(0, 10).map((i) => {
    const path = ['$', ...i.path.map((p) => String(p).slice(0, 64))];
    const text =
      i.code === 'unrecognized_keys'
        ? `${[...path, String(i.keys[0] ?? '').slice(0, 64)].join('.')}: unknown key`
        : `${path.join('.')}: ${i.message}`;
    return text.slice(0, 160);
  });
  throw new BadRequestError(`invalid ${what}: ${issues[0]}`, { data: { issues } });
}

/** Most rounds of dropping unknown keys `parseStored` takes (one per level of nesting that had some). */
const STORED_PARSE_ROUNDS = 8;

/**
 * A record this version reads from the cluster's own stores, written perhaps by a newer version
 * (a rolling upgrade: newer workers store profiles with fields older ones do not know): keys the
 * schema does not know are dropped, at any depth, and everything else is validated as strictly as
 * `parseWith` does (a known field out of bounds still fails, as does a record with nothing but
 * unknown keys where fields are required). Messages on the bus stay strict: this is for stored
 * records only.
 */
export function parseStored<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.infer<S> {
  let value = raw;
  for (let round = 0; round < STORED_PARSE_ROUNDS; round++) {
    const r = schema.safeParse(value);
    if (r.success) return r.data;
    const unknown = r.error.issues.filter((i) => i.code === 'unrecognized_keys');
    if (unknown.length === 0) break;
    if (value === raw) value = structuredClone(raw);
    for (const issue of unknown) {
      let at: unknown = value;
      for (const step of issue.path) at = at !== null && typeof at === 'object' ? (at as Record<PropertyKey, unknown>)[step] : undefined;
      if (at === null || typeof at !== 'object') continue;
      for (const key of issue.keys) delete (at as Record<string, unknown>)[key];
    }
  }
  return parseWith(schema, value, what);
}

const V = z.literal(PROTOCOL_VERSION);
/** Replica ids the head makes: `<model>-<10 chars>`; anything token-safe up to 128 characters is accepted. */
export const ReplicaId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'use 1-128 letters, digits, _ . : or -');
/** Device ids: `cpu` or `gpu:<index>`. */
export const DeviceId = z.string().regex(/^(cpu|gpu:\d{1,3})$/, 'use cpu or gpu:<index>');

/** Head → worker: load a replica of a deployment on a device. */
export const LoadCommandSchema = z
  .object({
    v: V,
    replicaId: ReplicaId,
    device: DeviceId,
    spec: DeploySpec,
    /** Memory to charge the device for this replica (the head's estimate or the profile's figure), bytes. */
    bytes: z
      .number()
      .int()
      .min(1)
      .max(2 ** 53)
      .optional(),
  })
  .strict();
export type LoadCommandMsg = z.infer<typeof LoadCommandSchema>;
export type LoadCommand = LoadCommandMsg;

/** Head → worker: unload (drain, then release) a replica. */
export const UnloadCommandSchema = z.object({ v: V, replicaId: ReplicaId }).strict();
export type UnloadCommandMsg = z.infer<typeof UnloadCommandSchema>;
export type UnloadCommand = UnloadCommandMsg;

export const parseLoadCommand = (raw: unknown): LoadCommandMsg => parseWith(LoadCommandSchema, raw, 'load command');
export const parseUnloadCommand = (raw: unknown): UnloadCommandMsg => parseWith(UnloadCommandSchema, raw, 'unload command');
