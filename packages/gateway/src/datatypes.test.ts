import { DTYPES, ErrorCode, toTypedArray, type DType, type FlotillaError } from '@flotilla/protocol';
import {
  DTYPE_TO_V2,
  V2_TO_DTYPE,
  floatToHalfBits,
  halfBitsToFloat,
  toDType,
  toV2Datatype,
  toV2Shape,
  v2InputToWire,
  wireToV2Output,
} from './datatypes.js';

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return `${(e as FlotillaError).code}: ${(e as Error).message}`;
  }
  return 'no error';
}

describe('datatype tables', () => {
  it.each([
    ['BOOL', 'bool'],
    ['UINT8', 'uint8'],
    ['UINT16', 'uint16'],
    ['UINT32', 'uint32'],
    ['UINT64', 'uint64'],
    ['INT8', 'int8'],
    ['INT16', 'int16'],
    ['INT32', 'int32'],
    ['INT64', 'int64'],
    ['FP16', 'float16'],
    ['FP32', 'float32'],
    ['FP64', 'float64'],
  ] as const)('%s ↔ %s', (v2, dtype) => {
    expect(toDType(v2)).toBe(dtype);
    expect(toV2Datatype(dtype)).toBe(v2);
  });

  it('covers every Flotilla dtype both ways', () => {
    expect(Object.keys(DTYPE_TO_V2).sort()).toEqual(Object.keys(DTYPES).sort());
    expect(Object.keys(V2_TO_DTYPE)).toHaveLength(Object.keys(DTYPES).length);
  });

  it.each(['BYTES', 'BF16', 'fp32', 'float32', '', 42, undefined])('refuses %p with BAD_REQUEST', (x) => {
    expect(codeOf(() => toDType(x))).toMatch(/^BAD_REQUEST: .*unsupported datatype/);
  });

  it('writes dynamic dims as -1', () => {
    expect(toV2Shape([null, 16])).toEqual([-1, 16]);
    expect(toV2Shape([1, 3, null, null])).toEqual([1, 3, -1, -1]);
  });
});

describe('half precision', () => {
  it.each([
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest half
    [65520, 0x7c00], // rounds up to Infinity
    [1e6, 0x7c00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // halfway to 0: rounds to even (0)
    [1.5 * 2 ** -24, 0x0002], // halfway between 1 and 2 ulps: rounds to even (2)
    [1 + 2 ** -11, 0x3c00], // halfway: rounds to even
    [1 + 3 * 2 ** -11, 0x3c02],
    [0.1, 0x2e66],
  ])('%p → 0x%s', (x, bits) => {
    expect(floatToHalfBits(x)).toBe(bits);
  });

  it('NaN stays NaN', () => {
    expect(Number.isNaN(halfBitsToFloat(floatToHalfBits(NaN)))).toBe(true);
  });

  it('round-trips every finite half exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = halfBitsToFloat(h);
      if (!Number.isFinite(x)) continue;
      if (floatToHalfBits(x) !== h) throw new Error(`0x${h.toString(16)} → ${x} → 0x${floatToHalfBits(x).toString(16)}`);
    }
  });
});

describe('v2 inputs → wire tensors', () => {
  const input = (datatype: string, data: unknown[], shape = [data.length]) => ({ name: 'x', shape, datatype, data });

  it.each([
    ['FP32', [1.5, -2, 0.25], 'float32'],
    ['FP64', [1e300, -1e-300], 'float64'],
    ['INT8', [-128, 127], 'int8'],
    ['UINT8', [0, 255], 'uint8'],
    ['INT16', [-32768, 32767], 'int16'],
    ['UINT16', [0, 65535], 'uint16'],
    ['INT32', [-(2 ** 31), 2 ** 31 - 1], 'int32'],
    ['UINT32', [0, 2 ** 32 - 1], 'uint32'],
  ] as const)('%s keeps its values', (datatype, data, dtype) => {
    const { name, tensor } = v2InputToWire(input(datatype, [...data]));
    expect(name).toBe('x');
    expect(tensor.dtype).toBe(dtype);
    expect(tensor.data.byteLength).toBe(data.length * DTYPES[dtype as DType].bytes);
    expect(Array.from(toTypedArray(tensor) as Float64Array)).toEqual(data);
  });

  it('64-bit integers from numbers and decimal strings', () => {
    const { tensor } = v2InputToWire(input('INT64', [-5, '9223372036854775807', '-9223372036854775808']));
    expect(Array.from(toTypedArray(tensor) as BigInt64Array)).toEqual([-5n, 2n ** 63n - 1n, -(2n ** 63n)]);
    const u = v2InputToWire(input('UINT64', ['18446744073709551615', 0])).tensor;
    expect(Array.from(toTypedArray(u) as BigUint64Array)).toEqual([2n ** 64n - 1n, 0n]);
  });

  it('BOOL from true/false and 0/1; FP16 as half bits; special floats as strings', () => {
    expect(Array.from(v2InputToWire(input('BOOL', [true, false, 1, 0])).tensor.data)).toEqual([1, 0, 1, 0]);
    expect(Array.from(toTypedArray(v2InputToWire(input('FP16', [1, -2, 0.5])).tensor) as Uint16Array)).toEqual([0x3c00, 0xc000, 0x3800]);
    const f = toTypedArray(v2InputToWire(input('FP32', ['NaN', 'Infinity', '-inf'])).tensor) as Float32Array;
    expect([Number.isNaN(f[0]), f[1], f[2]]).toEqual([true, Infinity, -Infinity]);
  });

  it('takes nested data in row-major order', () => {
    const { tensor } = v2InputToWire({
      name: 'x',
      shape: [2, 2],
      datatype: 'INT32',
      data: [
        [1, 2],
        [3, 4],
      ],
    });
    expect(tensor.dims).toEqual([2, 2]);
    expect(Array.from(toTypedArray(tensor) as Int32Array)).toEqual([1, 2, 3, 4]);
  });

  it.each([
    ['not an object', 7, /inputs\[0\] must be an object/],
    ['no name', { shape: [1], datatype: 'FP32', data: [1] }, /name must be a non-empty string/],
    ['bad datatype', { name: 'x', shape: [1], datatype: 'BYTES', data: ['a'] }, /unsupported datatype "BYTES"/],
    ['bad shape', { name: 'x', shape: [-1], datatype: 'FP32', data: [1] }, /shape must be an array of non-negative integers/],
    ['count mismatch', { name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3] }, /3 values given, shape \[2,2\] needs 4/],
    ['data not an array', { name: 'x', shape: [1], datatype: 'FP32', data: 'abc' }, /data must be an array/],
    ['string in FP32', { name: 'x', shape: [2], datatype: 'FP32', data: [1, 'abc'] }, /data\[1\] = "abc" is not a number/],
    ['null in FP32', { name: 'x', shape: [1], datatype: 'FP32', data: [null] }, /is not a number/],
    ['fraction in INT32', { name: 'x', shape: [1], datatype: 'INT32', data: [1.5] }, /is not an integer/],
    ['INT8 out of range', { name: 'x', shape: [1], datatype: 'INT8', data: [128] }, /out of range for INT8/],
    ['UINT8 negative', { name: 'x', shape: [1], datatype: 'UINT8', data: [-1] }, /out of range for UINT8/],
    ['INT64 out of range', { name: 'x', shape: [1], datatype: 'INT64', data: ['9223372036854775808'] }, /out of range for INT64/],
    ['UINT64 negative', { name: 'x', shape: [1], datatype: 'UINT64', data: [-1] }, /out of range for UINT64/],
    ['BOOL as string', { name: 'x', shape: [1], datatype: 'BOOL', data: ['true'] }, /is not a boolean/],
    ['parameters not an object', { name: 'x', shape: [1], datatype: 'FP32', data: [1], parameters: 3 }, /parameters must be an object/],
  ])('%s → BAD_REQUEST', (_what, raw, message) => {
    const got = codeOf(() => v2InputToWire(raw));
    expect(got.startsWith(`${ErrorCode.BAD_REQUEST}: `)).toBe(true);
    expect(got).toMatch(message);
  });
});

describe('wire tensors → v2 outputs', () => {
  const roundTrip = (datatype: string, data: unknown[]) =>
    wireToV2Output('y', v2InputToWire({ name: 'x', shape: [data.length], datatype, data }).tensor);

  it.each([
    ['FP32', [0.5, -1.25]],
    ['FP64', [1e300, 0.1]],
    ['FP16', [1, -2, 0.5, 65504]],
    ['INT8', [-128, 127]],
    ['UINT16', [65535]],
    ['INT32', [-7, 7]],
    ['UINT32', [4294967295]],
    ['INT64', [-(2 ** 53) + 1, 42]],
    ['BOOL', [true, false]],
  ])('%s round-trips', (datatype, data) => {
    expect(roundTrip(datatype, data)).toEqual({ name: 'y', shape: [data.length], datatype, data });
  });

  it('writes 64-bit integers beyond 2^53 as strings and non-finite floats as strings', () => {
    expect(roundTrip('INT64', ['9223372036854775807']).data).toEqual(['9223372036854775807']);
    expect(roundTrip('FP32', ['NaN', 'Infinity', '-Infinity']).data).toEqual(['NaN', 'Infinity', '-Infinity']);
    expect(roundTrip('FP16', ['-Infinity']).data).toEqual(['-Infinity']);
  });

  it('keeps float32 values exact through JSON', () => {
    const values = [0.1, 1 / 3, -123.456, 3.4e38];
    const out = roundTrip('FP32', values);
    const back = Float32Array.from(JSON.parse(JSON.stringify(out.data)) as number[]);
    expect(Array.from(back)).toEqual(Array.from(Float32Array.from(values)));
  });
});
