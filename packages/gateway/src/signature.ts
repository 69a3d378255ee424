// A deployed model's inputs and outputs, for v2 model metadata, learned from its replicas without
// any new control-plane call: a request with no inputs is answered INPUT_MISMATCH carrying the
// input signature (`data.expected`), and one run on all-zero inputs shows the outputs (run twice,
// dynamic dims set to 1 then 2, to tell the outputs' dynamic dims: those that changed are -1).
// Results are cached per model digest (the same file has the same signature).
import { DTYPES, ErrorCode, FlotillaError, isDType, type DType, type WireTensors } from '@flotilla/protocol';
import type { FlotillaClient } from '@flotilla/client';
import { toV2Datatype, toV2Shape, type V2Datatype } from './datatypes.js';

export interface TensorMetadata {
  name: string;
  datatype: V2Datatype;
  /** -1 for a dynamic dim. */
  shape: number[];
}

export interface ModelSignatureInfo {
  inputs: TensorMetadata[];
  /** Empty when the zero-input run failed (the inputs are still known). */
  outputs: TensorMetadata[];
}

interface InputSpec {
  name: string;
  dtype: DType;
  shape: Array<number | null>;
}

function inputSpecs(err: unknown): InputSpec[] | undefined {
  if (!(err instanceof FlotillaError) || err.code !== ErrorCode.INPUT_MISMATCH) return undefined;
  const expected = (err.data as { expected?: unknown } | undefined)?.expected;
  if (!Array.isArray(expected)) return undefined;
  const ok = expected.every(
    (s) =>
      s &&
      typeof s.name === 'string' &&
      isDType(s.dtype) &&
      Array.isArray(s.shape) &&
      s.shape.every((d: unknown) => d === null || Number.isSafeInteger(d)),
  );
  return ok ? (expected as InputSpec[]) : undefined;
}

function zeros(specs: InputSpec[], dynamic: number): WireTensors {
  const out: WireTensors = {};
  for (const s of specs) {
    const dims = s.shape.map((d) => d ?? dynamic);
    out[s.name] = { dtype: s.dtype, dims, data: new Uint8Array(dims.reduce((a, b) => a * b, 1) * DTYPES[s.dtype].bytes) };
  }
  return out;
}

/** Codes after which probing again later could give another answer (not cached). */
const TRANSIENT = new Set<string>([ErrorCode.OVERLOADED, ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED, ErrorCode.NO_CAPACITY]);
const transient = (err: unknown) => !(err instanceof FlotillaError) || TRANSIENT.has(err.code);

export class SignatureProbe {
  private readonly cache = new Map<string, Promise<ModelSignatureInfo | undefined>>();

  constructor(
    private readonly client: FlotillaClient,
    private readonly timeoutMs = 5000,
    private readonly maxEntries = 256,
  ) {}

  /** The model's signature, or undefined when its replicas did not tell (not cached then). */
  get(model: string, digest: string): Promise<ModelSignatureInfo | undefined> {
    let p = this.cache.get(digest);
    if (!p) {
      if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
      p = this.probe(model).then(
        ({ info, cacheable }) => {
          if (!cacheable) this.cache.delete(digest);
          return info;
        },
        () => {
          this.cache.delete(digest);
          return undefined;
        },
      );
      this.cache.set(digest, p);
    }
    return p;
  }

  private async probe(model: string): Promise<{ info?: ModelSignatureInfo; cacheable: boolean }> {
    const opts = { timeoutMs: this.timeoutMs };
    let specs: InputSpec[] | undefined;
    try {
      const { outputs } = await this.client.inferWire(model, {}, opts); // a model with no inputs just runs
      const outs = Object.entries(outputs).map(([name, t]) => ({ name, datatype: toV2Datatype(t.dtype), shape: [...t.dims] }));
      return { info: { inputs: [], outputs: outs }, cacheable: true };
    } catch (err) {
      specs = inputSpecs(err);
      if (!specs) return { cacheable: !transient(err) };
    }
    const inputs = specs.map((s) => ({ name: s.name, datatype: toV2Datatype(s.dtype), shape: toV2Shape(s.shape) }));
    try {
      const a = (await this.client.inferWire(model, zeros(specs, 1), opts)).outputs;
      const hasDynamic = specs.some((s) => s.shape.includes(null));
      const b = hasDynamic ? (await this.client.inferWire(model, zeros(specs, 2), opts)).outputs : a;
      const outputs = Object.entries(a).map(([name, t]) => ({
        name,
        datatype: toV2Datatype(t.dtype),
        shape: t.dims.map((d, i) => (b[name]?.dims.length === t.dims.length && b[name]!.dims[i] === d ? d : -1)),
      }));
      return { info: { inputs, outputs }, cacheable: true };
    } catch (err) {
      return { info: { inputs, outputs: [] }, cacheable: !transient(err) };
    }
  }
}
