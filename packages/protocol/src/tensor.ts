// Tensors on the wire: `{ dtype, dims, data }` where `data` is the raw little-endian element bytes
// (msgpack `bin`). Any msgpack library reads that; typed arrays are views made on arrival.
import { BadRequestError } from './errors.js';

export const DTYPES = {
  float32: { bytes: 4, array: Float32Array },
  float64: { bytes: 8, array: Float64Array },
  float16: { bytes: 2, array: Uint16Array }, // IEEE half bits, as onnxruntime-node takes them
  int8: { bytes: 1, array: Int8Array },
  uint8: { bytes: 1, array: Uint8Array },
  int16: { bytes: 2, array: Int16Array },
  uint16: { bytes: 2, array: Uint16Array },
  int32: { bytes: 4, array: Int32Array },
  uint32: { bytes: 4, array: Uint32Array },
  int64: { bytes: 8, array: BigInt64Array },
  uint64: { bytes: 8, array: BigUint64Array },
  bool: { bytes: 1, array: Uint8Array },
} as const;
export type DType = keyof typeof DTYPES;
export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, x);
}

export interface WireTensor {
  dtype: DType;
  dims: number[];
  data: Uint8Array;
}
export type WireTensors = Record<string, WireTensor>;

/** Largest element count a single tensor may declare (guards `dims` products against overflow). */
export const MAX_TENSOR_ELEMENTS = 2 ** 31;

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Checks a decoded value is a well-formed tensor; throws BAD_REQUEST naming the problem. */
export function checkWireTensor(name: string, t: unknown): WireTensor {
  if (t === null || typeof t !== 'object') throw new BadRequestError(`tensor '${name}' must be a map { dtype, dims, data }`);
  const { dtype, dims, data } = t as Record<string, unknown>;
  if (!isDType(dtype)) {
    throw new BadRequestError(`tensor '${name}': unsupported dtype ${JSON.stringify(dtype)}`, {
      data: { supported: Object.keys(DTYPES) },
    });
  }
  if (!Array.isArray(dims) || !dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new BadRequestError(`tensor '${name}': dims must be an array of non-negative integers`);
  }
  if (!(data instanceof Uint8Array)) throw new BadRequestError(`tensor '${name}': data must be msgpack bin (raw bytes)`);
  const count = elementCount(dims);
  if (count > MAX_TENSOR_ELEMENTS) throw new BadRequestError(`tensor '${name}': ${count} elements exceed ${MAX_TENSOR_ELEMENTS}`);
  const expected = count * DTYPES[dtype].bytes;
  if (data.byteLength !== expected) {
    throw new BadRequestError(
      `tensor '${name}': data has ${data.byteLength} bytes, dims [${dims.join(',')}] of ${dtype} need ${expected}`,
      { data: { expectedBytes: expected, actualBytes: data.byteLength } },
    );
  }
  return { dtype, dims: dims as number[], data };
}

/** A typed-array view of the tensor's bytes; copies when the bytes sit at an unaligned offset. */
export function toTypedArray(t: WireTensor): TypedArray {
  const { bytes, array } = DTYPES[t.dtype];
  let buf = t.data;
  if (buf.byteOffset % bytes !== 0) buf = new Uint8Array(buf); // copy realigns at offset 0
  return new array(buf.buffer as ArrayBuffer, buf.byteOffset, buf.byteLength / bytes) as TypedArray;
}

/** Wraps a typed array's bytes (no copy) as a wire tensor. */
export function fromTypedArray(dtype: DType, dims: readonly number[], values: TypedArray): WireTensor {
  const data = new Uint8Array(values.buffer as ArrayBuffer, values.byteOffset, values.byteLength);
  return { dtype, dims: [...dims], data };
}

/** JSON form used by the CLI and files: `{ dtype, dims, data: number[] }` (int64 as numbers or strings). */
export interface JsonTensor {
  dtype: DType;
  dims: number[];
  data: Array<number | string | boolean>;
}

export function fromJsonTensor(name: string, j: unknown): WireTensor {
  if (j === null || typeof j !== 'object') throw new BadRequestError(`tensor '${name}' must be an object { dtype, dims, data }`);
  const { dtype, dims, data } = j as Record<string, unknown>;
  if (!isDType(dtype)) throw new BadRequestError(`tensor '${name}': unsupported dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(dims) || !dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new BadRequestError(`tensor '${name}': dims must be an array of non-negative integers`);
  }
  if (!Array.isArray(data)) throw new BadRequestError(`tensor '${name}': data must be an array`);
  const count = elementCount(dims);
  if (data.length !== count) {
    throw new BadRequestError(`tensor '${name}': ${data.length} values given, dims [${dims.join(',')}] need ${count}`);
  }
  const { array } = DTYPES[dtype];
  let values: TypedArray;
  if (array === BigInt64Array || array === BigUint64Array) {
    values = new array(count);
    data.forEach((x, i) => ((values as BigInt64Array)[i] = BigInt(x as number | string)));
  } else {
    values = new array(count);
    data.forEach((x, i) => ((values as Float32Array)[i] = Number(x)));
  }
  return fromTypedArray(dtype, dims, values);
}

export function toJsonTensor(t: WireTensor): JsonTensor {
  const values = toTypedArray(t);
  const data: Array<number | string | boolean> = [];
  if (values instanceof BigInt64Array || values instanceof BigUint64Array) {
    for (const v of values) data.push(Number.isSafeInteger(Number(v)) ? Number(v) : v.toString());
  } else if (t.dtype === 'bool') {
    for (const v of values as Uint8Array) data.push(v !== 0);
  } else {
    for (const v of values as Float32Array) data.push(v);
  }
  return { dtype: t.dtype, dims: [...t.dims], data };
}
