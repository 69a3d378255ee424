// The v2 REST inference request and response, with the binary tensor data extension: a request's
// inputs come as JSON `data` or as binary chunks (`parameters.binary_data_size`), and each output
// goes back as JSON or binary (`binary_data` per output, else the request's `binary_data_output`).
// Pure: the HTTP shell hands in the parsed JSON and the binary section.
import { BadRequestError, DTYPES, MAX_TENSOR_ELEMENTS, elementCount, type WireTensor, type WireTensors } from '@flotilla/protocol';
import { sliceBinary } from './binary-data.js';
import { toDType, toV2Datatype, v2InputToWire, wireToV2Output, type V2Datatype, type V2Tensor } from './datatypes.js';

/** The version every model is served as (Flotilla has one file per deployment). */
export const MODEL_VERSION = '1';

export interface V2InferRequest {
  id?: string;
  inputs: WireTensors;
  /** Output names asked for, in order; undefined: all the model's outputs. */
  outputs?: string[];
  /** Whether an output goes back as binary data. */
  binaryOutput(name: string): boolean;
}

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => x !== null && typeof x === 'object' && !Array.isArray(x);

function params(x: unknown, what: string): Obj {
  if (x === undefined) return {};
  if (!isObj(x)) throw new BadRequestError(`${what}.parameters must be an object`);
  return x;
}

function flag(p: Obj, key: string, what: string): boolean | undefined {
  const v = p[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new BadRequestError(`${what}.parameters.${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** A binary input (HTTP binary data, gRPC raw contents): its name, datatype, shape and bytes, checked against each other. */
export function binaryInputToWire(input: Obj, index: number, chunk: Uint8Array): { name: string; tensor: WireTensor } {
  const { name, shape, datatype, data } = input;
  if (typeof name !== 'string' || name === '') throw new BadRequestError(`inputs[${index}].name must be a non-empty string`);
  const what = `input '${name}'`;
  const dtype = toDType(datatype, what);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new BadRequestError(`${what}: shape must be an array of non-negative integers`);
  }
  if (data !== undefined) throw new BadRequestError(`${what}: has both data and parameters.binary_data_size`);
  const count = elementCount(shape as number[]);
  if (count > MAX_TENSOR_ELEMENTS) throw new BadRequestError(`${what}: ${count} elements exceed ${MAX_TENSOR_ELEMENTS}`);
  const want = count * DTYPES[dtype].bytes;
  if (chunk.byteLength !== want) {
    throw new BadRequestError(
      `${what}: binary_data_size is ${chunk.byteLength} bytes, shape [${(shape as number[]).join(',')}] of ${datatype as string} needs ${want}`,
      { data: { expectedBytes: want, actualBytes: chunk.byteLength } },
    );
  }
  return { name, tensor: { dtype, dims: [...(shape as number[])], data: chunk } };
}

/**
 * Checks a v2 inference request (its JSON object and the binary section after it) and converts
 * its inputs to wire tensors. Extensions not served here (classification, shared memory) are
 * BAD_REQUEST rather than silently ignored.
 */
export function parseV2InferRequest(body: unknown, binary: Uint8Array = new Uint8Array(0)): V2InferRequest {
  if (!isObj(body)) throw new BadRequestError('the body must be a JSON object { inputs: [...] }');
  if (!Array.isArray(body.inputs) || body.inputs.length === 0) throw new BadRequestError('`inputs` must be a non-empty array of tensors');
  if (body.id !== undefined && typeof body.id !== 'string') throw new BadRequestError('`id` must be a string');
  const reqParams = params(body.parameters, 'request');
  const allBinary = flag(reqParams, 'binary_data_output', 'request') ?? false;

  // Binary chunks follow the JSON in the order the inputs are listed.
  const sizes: Array<{ name: string; bytes: number; index: number }> = [];
  body.inputs.forEach((raw, index) => {
    if (!isObj(raw)) throw new BadRequestError(`inputs[${index}] must be an object { name, shape, datatype, data }`);
    const p = params(raw.parameters, `inputs[${index}]`);
    if (p.shared_memory_region !== undefined) throw new BadRequestError(`inputs[${index}]: shared memory is not supported`);
    if (p.binary_data_size !== undefined) sizes.push({ name: String(raw.name), bytes: p.binary_data_size as number, index });
  });
  const chunks = sliceBinary(binary, sizes);
  const chunkOf = new Map(sizes.map((s, i) => [s.index, chunks[i]!]));

  const inputs: WireTensors = {};
  body.inputs.forEach((raw, index) => {
    const chunk = chunkOf.get(index);
    const { name, tensor } = chunk ? binaryInputToWire(raw as Obj, index, chunk) : v2InputToWire(raw, index);
    if (Object.prototype.hasOwnProperty.call(inputs, name)) throw new BadRequestError(`input '${name}' is given twice`);
    inputs[name] = tensor;
  });

  let outputs: string[] | undefined;
  const binaryByName = new Map<string, boolean>();
  if (body.outputs !== undefined) {
    if (!Array.isArray(body.outputs)) throw new BadRequestError('`outputs` must be an array of { name, parameters? }');
    outputs = body.outputs.map((o, i) => {
      if (!isObj(o) || typeof o.name !== 'string' || o.name === '')
        throw new BadRequestError(`outputs[${i}] must be { name, parameters? }`);
      const p = params(o.parameters, `outputs[${i}]`);
      if (p.classification !== undefined) throw new BadRequestError(`outputs[${i}]: the classification extension is not supported`);
      if (p.shared_memory_region !== undefined) throw new BadRequestError(`outputs[${i}]: shared memory is not supported`);
      const b = flag(p, 'binary_data', `outputs[${i}]`);
      if (b !== undefined) binaryByName.set(o.name, b);
      return o.name;
    });
    if (new Set(outputs).size !== outputs.length) throw new BadRequestError('`outputs` names an output twice');
  }
  return {
    ...(body.id !== undefined ? { id: body.id } : {}),
    inputs,
    ...(outputs ? { outputs } : {}),
    binaryOutput: (name) => binaryByName.get(name) ?? allBinary,
  };
}

/** One output in a response header: JSON data, or a binary size with the bytes in a chunk. */
export type V2OutputHeader = V2Tensor | { name: string; shape: number[]; datatype: V2Datatype; parameters: { binary_data_size: number } };

export interface V2InferResponse {
  header: { model_name: string; model_version: string; id: string; outputs: V2OutputHeader[] };
  /** The binary outputs' bytes, in the order they appear in `header.outputs`. */
  chunks: Uint8Array[];
}

/** The response for `names` (the outputs asked for, or all) of `outputs`, each JSON or binary as the request said. */
export function buildV2InferResponse(
  model: string,
  id: string,
  outputs: WireTensors,
  names: readonly string[],
  binaryOutput: (name: string) => boolean,
): V2InferResponse {
  const chunks: Uint8Array[] = [];
  const headers = names
    .filter((n) => Object.prototype.hasOwnProperty.call(outputs, n))
    .map((n): V2OutputHeader => {
      const t = outputs[n]!;
      if (!binaryOutput(n)) return wireToV2Output(n, t);
      chunks.push(t.data);
      return { name: n, shape: [...t.dims], datatype: toV2Datatype(t.dtype), parameters: { binary_data_size: t.data.byteLength } };
    });
  return { header: { model_name: model, model_version: MODEL_VERSION, id, outputs: headers }, chunks };
}
