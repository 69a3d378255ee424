// The Open Inference Protocol (KServe v2) JSON tensor form and Flotilla's wire tensors, both ways.
// v2: `{ name, shape, datatype: "FP32", data: [..] }` (data row-major, flat or nested);
// Flotilla: `{ dtype: "float32", dims, data: <raw little-endian bytes> }`. Pure, no I/O.
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

/** v2 datatype → Flotilla dtype. BYTES (strings) and BF16 have no Flotilla dtype. */
export const V2_TO_DTYPE = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
} as const satisfies Record<string, DType>;
export type V2Datatype = keyof typeof V2_TO_DTYPE;

/** Flotilla dtype → v2 datatype (every Flotilla dtype has one). */
export const DTYPE_TO_V2 = Object.fromEntries(Object.entries(V2_TO_DTYPE).map(([v2, d]) => [d, v2])) as Record<DType, V2Datatype>;

export function isV2Datatype(x: unknown): x is V2Datatype {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(V2_TO_DTYPE, x);
}

export function toDType(datatype: unknown, what = 'tensor'): DType {
  if (!isV2Datatype(datatype)) {
    throw new BadRequestError(
      `${what}: unsupported datatype ${JSON.stringify(datatype)} (supported: ${Object.keys(V2_TO_DTYPE).join(', ')})`,
      {
        data: { supported: Object.keys(V2_TO_DTYPE) },
      },
    );
  }
  return V2_TO_DTYPE[datatype];
}

export function toV2Datatype(dtype: DType): V2Datatype {
  return DTYPE_TO_V2[dtype];
}

/** A model signature dim (null: symbolic/dynamic) as v2 metadata writes it (-1: dynamic). */
export function toV2Shape(shape: ReadonlyArray<number | null>): number[] {
  return shape.map((d) => (d === null || d < 0 ? -1 : d));
}

// ---------- IEEE 754 half precision ----------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The IEEE half bits nearest to `x` (round to nearest even; overflow → ±Infinity; NaN kept). */
export function floatToHalfBits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // too large: Infinity
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit bit into place, round to even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // may carry into the exponent: still correct
  return half;
}

export function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// ---------- tensors ----------

/** A tensor in the v2 JSON form. */
export interface V2Tensor {
  name: string;
  shape: number[];
  datatype: V2Datatype;
  data: Array<number | boolean | string>;
  parameters?: Record<string, unknown>;
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
};
const BIG_RANGE: Partial<Record<DType, [bigint, bigint]>> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};
const SPECIAL_FLOATS: Record<string, number> = {
  nan: NaN,
  inf: Infinity,
  '+inf': Infinity,
  '-inf': -Infinity,
  infinity: Infinity,
  '+infinity': Infinity,
  '-infinity': -Infinity,
};

function flatten(data: unknown[]): unknown[] {
  return data.some(Array.isArray) ? (data as unknown[]).flat(Infinity) : data;
}

/**
 * Checks one v2 request input and converts it to a wire tensor. Values must fit the datatype:
 * numbers for FP* (or "NaN"/"Infinity"/"-Infinity"), integers in range for the INT and UINT types (64-bit
 * also as decimal strings), true/false (or 0/1) for BOOL. Throws BAD_REQUEST naming the problem.
 */
export function v2InputToWire(input: unknown, index = 0): { name: string; tensor: WireTensor } {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    throw new BadRequestError(`inputs[${index}] must be an object { name, shape, datatype, data }`);
  const { name, shape, datatype, data, parameters } = input as Record<string, unknown>;
  if (typeof name !== 'string' || name === '') throw new BadRequestError(`inputs[${index}].name must be a non-empty string`);
  const what = `input '${name}'`;
  const dtype = toDType(datatype, what);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new BadRequestError(`${what}: shape must be an array of non-negative integers`);
  }
  if (parameters !== undefined && (parameters === null || typeof parameters !== 'object' || Array.isArray(parameters)))
    throw new BadRequestError(`${what}: parameters must be an object`);
  if (!Array.isArray(data)) throw new BadRequestError(`${what}: data must be an array (or parameters.binary_data_size with binary data)`);
  const count = elementCount(shape);
  if (count > MAX_TENSOR_ELEMENTS) throw new BadRequestError(`${what}: ${count} elements exceed ${MAX_TENSOR_ELEMENTS}`);
  const flat = flatten(data);
  if (flat.length !== count) throw new BadRequestError(`${what}: ${flat.length} values given, shape [${shape.join(',')}] needs ${count}`);
  const bad = (i: number, why: string): never => {
    throw new BadRequestError(`${what}: data[${i}] = ${JSON.stringify(flat[i])} ${why}`);
  };
  const values = new DTYPES[dtype].array(count) as TypedArray;
  if (dtype === 'bool') {
    const out = values as Uint8Array;
    flat.forEach((x, i) => {
      if (x === true || x === 1) out[i] = 1;
      else if (x !== false && x !== 0) bad(i, 'is not a boolean');
    });
  } else if (dtype === 'float32' || dtype === 'float64' || dtype === 'float16') {
    const out = values as Float32Array | Float64Array | Uint16Array;
    const half = dtype === 'float16';
    flat.forEach((x, i) => {
      let v: number;
      if (typeof x === 'number') v = x;
      else if (typeof x === 'string' && Object.prototype.hasOwnProperty.call(SPECIAL_FLOATS, x.toLowerCase()))
        v = SPECIAL_FLOATS[x.toLowerCase()]!;
      else return bad(i, 'is not a number');
      out[i] = half ? floatToHalfBits(v) : v;
    });
  } else if (dtype === 'int64' || dtype === 'uint64') {
    const [lo, hi] = BIG_RANGE[dtype]!;
    const out = values as BigInt64Array | BigUint64Array;
    flat.forEach((x, i) => {
      let v: bigint;
      if (typeof x === 'number' && Number.isInteger(x)) v = BigInt(x);
      else if (typeof x === 'string' && /^-?\d+$/.test(x)) v = BigInt(x);
      else return bad(i, 'is not an integer');
      if (v < lo || v > hi) bad(i, `is out of range for ${datatype as string}`);
      out[i] = v;
    });
  } else {
    const [lo, hi] = INT_RANGE[dtype]!;
    const out = values as Int32Array;
    flat.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isInteger(x)) bad(i, 'is not an integer');
      if ((x as number) < lo || (x as number) > hi) bad(i, `is out of range for ${datatype as string}`);
      out[i] = x as number;
    });
  }
  return { name, tensor: fromTypedArray(dtype, shape as number[], values) };
}

/**
 * A wire tensor in the v2 JSON form. FP16 bits become numbers; 64-bit integers beyond ±2^53
 * become decimal strings (JSON numbers would lose them); NaN and ±Infinity, which JSON lacks,
 * become the strings "NaN", "Infinity", "-Infinity" (accepted back as inputs).
 */
const finite = (v: number): number | string => (Number.isFinite(v) ? v : String(v));

export function wireToV2Output(name: string, t: WireTensor): V2Tensor {
  const values = toTypedArray(t);
  let data: Array<number | boolean | string>;
  if (values instanceof BigInt64Array || values instanceof BigUint64Array) {
    data = Array.from(values as ArrayLike<bigint>, (v) => (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()));
  } else if (t.dtype === 'bool') {
    data = Array.from(values as Uint8Array, (v) => v !== 0);
  } else if (t.dtype === 'float16') {
    data = Array.from(values as Uint16Array, (h) => finite(halfBitsToFloat(h)));
  } else if (t.dtype === 'float32' || t.dtype === 'float64') {
    data = Array.from(values as Float32Array, finite);
  } else {
    data = Array.from(values as Int32Array);
  }
  return { name, shape: [...t.dims], datatype: toV2Datatype(t.dtype), data };
}
