// gRPC typed contents ↔ wire tensors, the raw-contents rules, and the status table (pure).
import { ErrorCode, FlotillaError, toTypedArray } from '@flotilla/protocol';
import { status } from '@grpc/grpc-js';
import { contentsToWire, grpcShape, wireToContents } from './grpc-contents.js';
import { grpcInputsToWire, grpcStatusForCode } from './grpc-server.js';

const message = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof FlotillaError ? `${e.code}: ${e.message}` : String(e);
  }
  return 'no error';
};

describe('typed contents', () => {
  it.each([
    ['FP32', { fp32_contents: [1.5, -2] }],
    ['FP64', { fp64_contents: [1e300, 0.1] }],
    ['INT8', { int_contents: [-128, 127] }],
    ['INT32', { int_contents: [-7, 7] }],
    ['UINT16', { uint_contents: [0, 65535] }],
    ['INT64', { int64_contents: ['-9223372036854775808', '42'] }],
    ['UINT64', { uint64_contents: ['18446744073709551615', '0'] }],
    ['BOOL', { bool_contents: [true, false] }],
  ])('%s round-trips', (datatype, contents) => {
    const t = contentsToWire('x', datatype, [2], contents);
    expect(t.dims).toEqual([2]);
    expect(wireToContents(t)).toEqual(contents);
  });

  it('takes int64 given as numbers', () => {
    expect(Array.from(toTypedArray(contentsToWire('x', 'INT64', [1], { int64_contents: [5] })) as BigInt64Array)).toEqual([5n]);
  });

  it.each([
    ['a count that does not fit the shape', 'FP32', [3], { fp32_contents: [1, 2] }, /2 values in fp32_contents, shape \[3\] needs 3/],
    ['the wrong field', 'FP32', [1], { int_contents: [1] }, /FP32 data belongs in fp32_contents, not int_contents/],
    ['FP16 typed', 'FP16', [1], {}, /FP16 has no typed contents field; send it in raw_input_contents/],
    ['INT8 out of range', 'INT8', [1], { int_contents: [200] }, /out of range for INT8/],
    ['UINT64 negative', 'UINT64', [1], { uint64_contents: ['-1'] }, /out of range for UINT64/],
    ['BYTES', 'BYTES', [1], { bytes_contents: [new Uint8Array(1)] }, /unsupported datatype "BYTES"/],
  ])('refuses %s with BAD_REQUEST', (_what, datatype, dims, contents, why) => {
    const got = message(() => contentsToWire('x', datatype, dims, contents));
    expect(got.startsWith(`${ErrorCode.BAD_REQUEST}: `)).toBe(true);
    expect(got).toMatch(why);
  });

  it('has no typed contents for float16', () => {
    expect(wireToContents({ dtype: 'float16', dims: [1], data: new Uint8Array(2) })).toBeUndefined();
  });

  it('reads int64 shapes given as strings', () => {
    expect(grpcShape(['2', 3], 'x')).toEqual([2, 3]);
    expect(() => grpcShape(['-1'], 'x')).toThrow(/non-negative/);
  });
});

describe('raw input contents', () => {
  const input = (name: string) => ({ name, datatype: 'FP32', shape: ['2'], contents: null });
  const raw = Buffer.from(new Float32Array([1, 2]).buffer);

  it('gives each input its entry, in order', () => {
    const { inputs, raw: isRaw } = grpcInputsToWire({ inputs: [input('a'), input('b')], raw_input_contents: [raw, Buffer.alloc(8)] });
    expect(isRaw).toBe(true);
    expect(Array.from(toTypedArray(inputs.a!) as Float32Array)).toEqual([1, 2]);
    expect(Array.from(toTypedArray(inputs.b!) as Float32Array)).toEqual([0, 0]);
  });

  it.each([
    ['fewer entries than inputs', [input('a'), input('b')], [raw], /raw_input_contents has 1 entries for 2 inputs/],
    ['a size that does not fit', [input('a')], [Buffer.alloc(4)], /needs 8/],
    [
      'typed contents as well',
      [{ ...input('a'), contents: { fp32_contents: [1, 2] } }],
      [raw],
      /has fp32_contents while raw_input_contents is used/,
    ],
    ['no inputs', [], [], /at least one/],
    ['an input twice', [input('a'), input('a')], [raw, raw], /given twice/],
  ])('refuses %s', (_what, inputs, contents, why) => {
    expect(message(() => grpcInputsToWire({ inputs, raw_input_contents: contents }))).toMatch(why);
  });
});

describe('gRPC status of each code', () => {
  it.each([
    ['UNKNOWN_MODEL', status.NOT_FOUND],
    ['BAD_REQUEST', status.INVALID_ARGUMENT],
    ['INPUT_MISMATCH', status.INVALID_ARGUMENT],
    ['PAYLOAD_TOO_LARGE', status.RESOURCE_EXHAUSTED],
    ['OVERLOADED', status.UNAVAILABLE],
    ['DEADLINE_EXCEEDED', status.DEADLINE_EXCEEDED],
    ['FORBIDDEN', status.PERMISSION_DENIED],
    ['INTERNAL', status.INTERNAL],
    ['SOMETHING_NEW', status.INTERNAL],
  ])('%s → %i', (code, want) => expect(grpcStatusForCode(code)).toBe(want));
});
