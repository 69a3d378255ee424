// gRPC tensors: the typed `InferTensorContents` fields (one per datatype family, as the Open
// Inference Protocol assigns them) and Flotilla's wire tensors, both ways. 64-bit integers travel
// as decimal strings (the proto loader's `longs: String`), so none loses precision. Pure, no I/O.
import {
  BadRequestError,
  DTYPES,
  MAX_TENSOR_ELEMENTS,
  elementCount,
  fromTypedArray,
  toTypedArray,
  type DType,
  type TypedArray,
  type WireTensor,
} from '@flotilla/protocol';
import { toDType } from './datatypes.js';

/** The typed contents message as the proto loader gives and takes it. */
export interface TensorContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: Array<string | number>;
  uint_contents?: number[];
  uint64_contents?: Array<string | number>;
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Uint8Array[];
}

/** The contents field of each dtype; float16 has none (raw contents only). */
export const CONTENTS_FIELD: Readonly<Record<DType, keyof TensorContents | undefined>> = {
  bool: 'bool_contents',
  int8: 'int_contents',
  int16: 'int_contents',
  int32: 'int_contents',
  int64: 'int64_contents',
  uint8: 'uint_contents',
  uint16: 'uint_contents',
  uint32: 'uint_contents',
  uint64: 'uint64_contents',
  float32: 'fp32_contents',
  float64: 'fp64_contents',
  float16: undefined,
};

const RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 2 ** 32 - 1],
};

/** The dims of a gRPC shape (int64 values, as strings or numbers). */
export function grpcShape(shape: ReadonlyArray<string | number>, what: string): number[] {
  const dims = shape.map(Number);
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new BadRequestError(`${what}: shape must be non-negative integers`);
  return dims;
}

/** A gRPC input with typed contents as a wire tensor; BAD_REQUEST when the values do not fit. */
export function contentsToWire(name: string, datatype: string, dims: number[], contents: TensorContents | null | undefined): WireTensor {
  const what = `input '${name}'`;
  const dtype = toDType(datatype, what);
  const field = CONTENTS_FIELD[dtype];
  if (!field) throw new BadRequestError(`${what}: ${datatype} has no typed contents field; send it in raw_input_contents`);
  const count = elementCount(dims);
  if (count > MAX_TENSOR_ELEMENTS) throw new BadRequestError(`${what}: ${count} elements exceed ${MAX_TENSOR_ELEMENTS}`);
  for (const [f, v] of Object.entries(contents ?? {})) {
    if (f !== field && Array.isArray(v) && v.length > 0)
      throw new BadRequestError(`${what}: ${datatype} data belongs in ${field}, not ${f}`);
  }
  const values = (contents?.[field] ?? []) as unknown[];
  if (values.length !== count) {
    throw new BadRequestError(`${what}: ${values.length} values in ${field}, shape [${dims.join(',')}] needs ${count}`);
  }
  const out = new DTYPES[dtype].array(count) as TypedArray;
  if (dtype === 'bool') {
    values.forEach((v, i) => ((out as Uint8Array)[i] = v ? 1 : 0));
  } else if (dtype === 'int64' || dtype === 'uint64') {
    const [lo, hi] = dtype === 'int64' ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
    values.forEach((v, i) => {
      const b =
        typeof v === 'string' && /^-?\d+$/.test(v) ? BigInt(v) : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : undefined;
      if (b === undefined || b < lo || b > hi)
        throw new BadRequestError(`${what}: ${field}[${i}] = ${String(v)} is out of range for ${datatype}`);
      (out as BigInt64Array)[i] = b;
    });
  } else if (dtype === 'float32' || dtype === 'float64') {
    values.forEach((v, i) => ((out as Float64Array)[i] = v as number));
  } else {
    const [lo, hi] = RANGE[dtype]!;
    values.forEach((v, i) => {
      if (typeof v !== 'number' || v < lo || v > hi)
        throw new BadRequestError(`${what}: ${field}[${i}] = ${String(v)} is out of range for ${datatype}`);
      (out as Int32Array)[i] = v;
    });
  }
  return fromTypedArray(dtype, dims, out);
}

/** A wire tensor as typed contents; undefined for float16 (which has no typed field). */
export function wireToContents(t: WireTensor): TensorContents | undefined {
  const field = CONTENTS_FIELD[t.dtype];
  if (!field) return undefined;
  const values = toTypedArray(t);
  if (t.dtype === 'bool') return { bool_contents: Array.from(values as Uint8Array, (v) => v !== 0) };
  if (values instanceof BigInt64Array || values instanceof BigUint64Array) {
    return { [field]: Array.from(values as ArrayLike<bigint>, (v) => v.toString()) };
  }
  return { [field]: Array.from(values as Float32Array) };
}
