// A model's signature (from onnxruntime's input/output metadata) and the three things the request
// path does with it: validate a request's inputs, concatenate requests into one batch along axis 0,
// and split the batch's outputs back per request. No I/O; views instead of copies where possible.
// The published form (protocol `ModelSignature`, in heartbeats and deployment status) keeps the
// model's symbolic dim names (`batch`, `seq`, `N`, ...), so a caller can see which dims go together.
import {
  BadRequestError,
  DTYPES,
  InputMismatchError,
  elementCount,
  isDType,
  type DType,
  type WireTensor,
  ModelSignature as WireModelSignatureSchema,
  type ModelSignature as WireModelSignature,
  type WireTensors,
} from '@flotilla/protocol';

export interface TensorSpec {
  name: string;
  dtype: DType;
  /** What requests are checked against: static dims are numbers; symbolic or unknown dims are null. */
  shape: Array<number | null>;
  /** The dims as the model declares them: a number, a symbolic name (`batch`, `seq`), or null (dynamic, unnamed). */
  declared: Array<number | string | null>;
}

export interface ModelSignature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** True when every input and output has a symbolic leading dim: requests can be batched. */
  batchAxis: boolean;
}

interface ValueMetadataLike {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: ReadonlyArray<number | string>;
}

/**
 * One dim as onnxruntime-node 1.30 reports it: a number for a static dim, the `dim_param` string
 * for a symbolic one, and `''` (or a negative number) for a dynamic dim without a name.
 */
function declaredDim(d: number | string): number | string | null {
  if (typeof d === 'number') return Number.isInteger(d) && d >= 0 ? d : null;
  return d === '' ? null : d;
}

function spec(m: ValueMetadataLike): TensorSpec {
  if (!m.isTensor || !isDType(m.type)) {
    throw new BadRequestError(`model value '${m.name}' has type ${m.type ?? 'non-tensor'}, which Flotilla does not serve`);
  }
  const declared = (m.shape ?? []).map(declaredDim);
  return { name: m.name, dtype: m.type, shape: declared.map((d) => (typeof d === 'number' ? d : null)), declared };
}

export function describeModel(inputs: readonly ValueMetadataLike[], outputs: readonly ValueMetadataLike[]): ModelSignature {
  const ins = inputs.map(spec);
  const outs = outputs.map(spec);
  const dynamicLead = (t: TensorSpec) => t.shape.length > 0 && t.shape[0] === null;
  return { inputs: ins, outputs: outs, batchAxis: ins.length > 0 && ins.every(dynamicLead) && outs.every(dynamicLead) };
}

/**
 * The signature as replicas publish it (protocol `ModelSignature`): dims with their symbolic names.
 * Undefined when it would break the protocol's bounds (a name over 256 characters, rank over 16, ...):
 * the head refuses a whole heartbeat that does not parse, so such a model is served but not described.
 */
export function wireSignature(sig: ModelSignature): WireModelSignature | undefined {
  const wire = (t: TensorSpec) => ({ name: t.name, dtype: t.dtype, shape: [...t.declared] });
  const out = { inputs: sig.inputs.map(wire), outputs: sig.outputs.map(wire), batchAxis: sig.batchAxis };
  return WireModelSignatureSchema.safeParse(out).success ? out : undefined;
}

/**
 * Checks inputs against the signature. Returns the batch key (requests with equal keys can be
 * concatenated) and the number of items along the batch axis (1 for unbatched models).
 */
export function validateInputs(sig: ModelSignature, inputs: WireTensors): { key: string; items: number } {
  // Per request on the replica's hot path: no arrays, closures or texts unless something is wrong.
  let named = 0;
  for (const s of sig.inputs) if (Object.hasOwn(inputs, s.name)) named++;
  if (named !== sig.inputs.length || Object.keys(inputs).length !== named) throw namesMismatch(sig, inputs);
  let items = -1;
  let key = '';
  for (let n = 0; n < sig.inputs.length; n++) {
    const s = sig.inputs[n]!;
    const t = inputs[s.name]!;
    if (t.dtype !== s.dtype) {
      throw new InputMismatchError(`input '${s.name}' must be ${s.dtype}, got ${t.dtype}`, {
        data: { input: s.name, expected: s.dtype, got: t.dtype },
      });
    }
    const dims = t.dims;
    if (dims.length !== s.shape.length) {
      throw new InputMismatchError(`input '${s.name}' must have rank ${s.shape.length} ${shapeText(s)}, got [${dims.join(', ')}]`, {
        data: { input: s.name, expected: s.shape, got: dims },
      });
    }
    for (let i = 0; i < dims.length; i++) {
      const d = s.shape[i];
      if (d !== null && d !== undefined && dims[i] !== d) {
        throw new InputMismatchError(`input '${s.name}' dim ${i} must be ${d} ${shapeText(s)}, got [${dims.join(', ')}]`, {
          data: { input: s.name, expected: s.shape, got: dims },
        });
      }
    }
    if (sig.batchAxis) {
      const lead = dims[0]!;
      if (lead < 1) throw new InputMismatchError(`input '${s.name}' has an empty batch (dim 0 is 0)`);
      if (items === -1) items = lead;
      else if (lead !== items) {
        throw new InputMismatchError(`inputs disagree on the batch size (dim 0): '${s.name}' has ${lead}, others ${items}`);
      }
      key += `${n ? '|' : ''}${s.name}:`;
      for (let i = 1; i < dims.length; i++) key += i > 1 ? `x${dims[i]}` : `${dims[i]}`;
    }
  }
  return { key, items: sig.batchAxis ? items : 1 };
}

/** `[?, 3, 64, 64]`: an input's shape for a message. */
function shapeText(s: TensorSpec): string {
  return `[${s.shape.map((d) => d ?? '?').join(', ')}]`;
}

/** The error for inputs whose names are not the model's: what is missing, what is unknown. */
function namesMismatch(sig: ModelSignature, inputs: WireTensors): InputMismatchError {
  const given = Object.keys(inputs);
  const expected = sig.inputs.map((i) => i.name);
  const unknown = given.filter((n) => !expected.includes(n));
  const missing = expected.filter((n) => !given.includes(n));
  return new InputMismatchError(
    `inputs do not match the model: ${[
      missing.length ? `missing ${missing.map((n) => `'${n}'`).join(', ')}` : '',
      unknown.length ? `unknown ${unknown.map((n) => `'${n}'`).join(', ')}` : '',
    ]
      .filter(Boolean)
      .join('; ')} (expected ${expected.map((n) => `'${n}'`).join(', ')})`,
    { data: { expected: sig.inputs } },
  );
}

/** Largest batched input kept for reuse between runs (larger ones are allocated per batch). */
export const MAX_SCRATCH_BYTES = 16 * 1024 * 1024;

/**
 * Concatenates the requests' inputs along axis 0 (no copy for a batch of one). With `scratch`, a
 * batch is written into that input's buffer from the previous batch when it fits (a replica runs
 * one batch at a time, and onnxruntime holds no input after its run): no fresh megabytes per batch
 * for the collector to account for. With `rows` above `items` the batch is padded with zero rows
 * to `rows` (a device that pays for every change of input shape runs one shape).
 */
export function concatBatch(
  sig: ModelSignature,
  requests: WireTensors[],
  items: number,
  scratch?: Map<string, Uint8Array>,
  rows = items,
): WireTensors {
  if (requests.length === 1 && rows <= items) return requests[0]!;
  const out: WireTensors = {};
  for (const s of sig.inputs) {
    const first = requests[0]![s.name]!;
    let filled = 0;
    for (const r of requests) filled += r[s.name]!.data.byteLength;
    const bytes = rows > items ? (filled / items) * rows : filled;
    const kept = scratch?.get(s.name);
    let data: Uint8Array;
    if (kept && kept.byteLength >= bytes) data = kept.subarray(0, bytes);
    else {
      data = new Uint8Array(bytes);
      if (scratch && bytes <= MAX_SCRATCH_BYTES) scratch.set(s.name, data);
    }
    let off = 0;
    for (const r of requests) {
      data.set(r[s.name]!.data, off);
      off += r[s.name]!.data.byteLength;
    }
    if (off < bytes) data.fill(0, off, bytes); // padding rows (a reused buffer holds an earlier batch)
    out[s.name] = { dtype: first.dtype, dims: [Math.max(rows, items), ...first.dims.slice(1)], data };
  }
  return out;
}

/** The first `items` rows of batched outputs (views, no copy): what a padded batch's requests asked for. */
export function firstRows(outputs: WireTensors, items: number): WireTensors {
  const out: WireTensors = {};
  for (const [name, t] of Object.entries(outputs)) {
    const total = t.dims[0] ?? 0;
    if (total <= items) {
      out[name] = t;
      continue;
    }
    const rowBytes = (elementCount(t.dims.slice(1)) * DTYPES[t.dtype].bytes) | 0;
    out[name] = { dtype: t.dtype, dims: [items, ...t.dims.slice(1)], data: t.data.subarray(0, items * rowBytes) } as WireTensor;
  }
  return out;
}

/** Splits batched outputs along axis 0 into `counts` parts (views, no copy). */
export function splitBatch(outputs: WireTensors, counts: number[]): WireTensors[] {
  if (counts.length === 1) return [outputs];
  const parts: WireTensors[] = counts.map(() => ({}));
  for (const [name, t] of Object.entries(outputs)) {
    const total = t.dims[0] ?? 0;
    const sum = counts.reduce((a, b) => a + b, 0);
    if (total !== sum) {
      throw new Error(`output '${name}' has ${total} rows along the batch axis, expected ${sum}`);
    }
    const rowBytes = (elementCount(t.dims.slice(1)) * DTYPES[t.dtype].bytes) | 0;
    let off = 0;
    counts.forEach((n, i) => {
      parts[i]![name] = { dtype: t.dtype, dims: [n, ...t.dims.slice(1)], data: t.data.subarray(off, off + n * rowBytes) } as WireTensor;
      off += n * rowBytes;
    });
  }
  return parts;
}
