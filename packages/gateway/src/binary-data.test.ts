// The binary tensor data framing, both ways, and the v2 request/response around it (pure).
import { ErrorCode, FlotillaError } from '@flotilla/protocol';
import { frameBody, parseHeaderLength, sliceBinary, splitBody } from './binary-data.js';
import { quoteNonFinite } from './json-nonfinite.js';
import { buildV2InferResponse, parseV2InferRequest } from './v2-request.js';

const bytesOf = (a: Float32Array | Uint32Array | Uint8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const message = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof FlotillaError ? `${e.code}: ${e.message}` : String(e);
  }
  return 'no error';
};

describe('binary framing', () => {
  it('reads the Inference-Header-Content-Length header', () => {
    expect(parseHeaderLength(undefined, 10)).toBeUndefined();
    expect(parseHeaderLength('4', 10)).toBe(4);
    expect(parseHeaderLength(['10'], 10)).toBe(10);
    for (const bad of ['11', '-1', 'x', '', '1.5']) expect(() => parseHeaderLength(bad, 10)).toThrow(/inference-header-content-length/);
  });

  it('splits a body into its JSON and binary parts', () => {
    const body = Buffer.concat([Buffer.from('{"a":1}'), Buffer.from([1, 2, 3])]);
    const { json, binary } = splitBody(body, 7);
    expect(json).toBe('{"a":1}');
    expect([...binary]).toEqual([1, 2, 3]);
    expect(splitBody(Buffer.from('{}'), undefined)).toEqual({ json: '{}', binary: Buffer.alloc(0) });
  });

  it('slices the binary part by sizes, which must add up exactly', () => {
    const bin = new Uint8Array([1, 2, 3, 4, 5]);
    expect(
      sliceBinary(bin, [
        { name: 'a', bytes: 2 },
        { name: 'b', bytes: 3 },
      ]).map((c) => [...c]),
    ).toEqual([
      [1, 2],
      [3, 4, 5],
    ]);
    expect(message(() => sliceBinary(bin, [{ name: 'a', bytes: 2 }]))).toMatch(
      /^BAD_REQUEST: 3 bytes after the JSON header belong to no input/,
    );
    expect(message(() => sliceBinary(bin, [{ name: 'a', bytes: 6 }]))).toMatch(
      /input 'a': binary_data_size 6 at offset 0 runs past the 5 bytes/,
    );
    expect(message(() => sliceBinary(bin, [{ name: 'a', bytes: -1 }]))).toMatch(/non-negative integer/);
  });

  it('frames a response as JSON then chunks, with the JSON length', () => {
    const plain = frameBody({ a: 1 }, []);
    expect(plain).toEqual({ body: Buffer.from('{"a":1}') });
    const framed = frameBody({ a: 1 }, [new Uint8Array([9, 8]), new Uint8Array([7])]);
    expect(framed.headerLength).toBe(7);
    expect([...framed.body]).toEqual([...Buffer.from('{"a":1}'), 9, 8, 7]);
  });
});

describe('v2 requests with binary inputs (the spec example: UINT32 [2,2] and BOOL [3])', () => {
  const u32 = Uint32Array.from([1, 2, 3, 4]);
  const bool = Uint8Array.from([1, 0, 1]);
  const header = {
    model_name: 'mymodel',
    inputs: [
      { name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: 16 } },
      { name: 'input1', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } },
    ],
    outputs: [{ name: 'output0', parameters: { binary_data: true } }],
  };
  const binary = Buffer.concat([bytesOf(u32), bytesOf(bool)]);

  it('takes each input from its chunk, in order', () => {
    const r = parseV2InferRequest(header, binary);
    expect(r.inputs.input0).toEqual({ dtype: 'uint32', dims: [2, 2], data: bytesOf(u32) });
    expect(r.inputs.input1).toEqual({ dtype: 'bool', dims: [3], data: bytesOf(bool) });
    expect(r.outputs).toEqual(['output0']);
    expect(r.binaryOutput('output0')).toBe(true);
    expect(r.binaryOutput('other')).toBe(false);
  });

  it('mixes JSON and binary inputs; binary_data_output applies unless an output says otherwise', () => {
    const r = parseV2InferRequest(
      {
        inputs: [{ name: 'j', shape: [1], datatype: 'FP32', data: [2.5] }, header.inputs[1]],
        outputs: [{ name: 'a' }, { name: 'b', parameters: { binary_data: false } }],
        parameters: { binary_data_output: true },
      },
      Buffer.from(bool),
    );
    expect(r.inputs.j!.dims).toEqual([1]);
    expect(r.binaryOutput('a')).toBe(true);
    expect(r.binaryOutput('b')).toBe(false);
  });

  it.each([
    [
      'a size that does not fit the shape',
      [{ ...header.inputs[0], parameters: { binary_data_size: 12 } }],
      binary.subarray(0, 12),
      /needs 16/,
    ],
    ['bytes left over', [header.inputs[0]], binary, /3 bytes after the JSON header belong to no input/],
    ['data and a binary size', [{ ...header.inputs[1], data: [true, false, true] }], Buffer.from(bool), /both data and/],
    [
      'BYTES',
      [{ name: 's', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: 5 } }],
      Buffer.alloc(5),
      /unsupported datatype "BYTES"/,
    ],
  ])('refuses %s with BAD_REQUEST', (_what, inputs, bin, why) => {
    const got = message(() => parseV2InferRequest({ inputs }, bin));
    expect(got.startsWith(`${ErrorCode.BAD_REQUEST}: `)).toBe(true);
    expect(got).toMatch(why);
  });

  it('refuses extensions it does not serve, and bad parameters', () => {
    const x = { name: 'x', shape: [1], datatype: 'FP32', data: [1] };
    expect(message(() => parseV2InferRequest({ inputs: [x], outputs: [{ name: 'y', parameters: { classification: 2 } }] }))).toMatch(
      /classification/,
    );
    expect(message(() => parseV2InferRequest({ inputs: [{ ...x, parameters: { shared_memory_region: 'r' } }] }))).toMatch(/shared memory/);
    expect(message(() => parseV2InferRequest({ inputs: [x], parameters: { binary_data_output: 'yes' } }))).toMatch(/must be true or false/);
    expect(message(() => parseV2InferRequest({ inputs: [x], outputs: [{ name: 'y' }, { name: 'y' }] }))).toMatch(/twice/);
  });
});

describe('v2 responses', () => {
  const y = Float32Array.from([1.5, -2, 3]);
  const z = Uint8Array.from([1, 0]);
  const outputs = {
    y: { dtype: 'float32' as const, dims: [3], data: bytesOf(y) },
    z: { dtype: 'bool' as const, dims: [2], data: bytesOf(z) },
  };

  it('writes binary outputs as sizes in the header and bytes after it, JSON ones as data', () => {
    const r = buildV2InferResponse('m', 'id-1', outputs, ['y', 'z'], (n) => n === 'y');
    expect(r.header).toEqual({
      model_name: 'm',
      model_version: '1',
      id: 'id-1',
      outputs: [
        { name: 'y', shape: [3], datatype: 'FP32', parameters: { binary_data_size: 12 } },
        { name: 'z', shape: [2], datatype: 'BOOL', data: [true, false] },
      ],
    });
    expect(r.chunks).toEqual([bytesOf(y)]);
    // Framed and read back as a client would: JSON of the header's length, then the chunk.
    const { body, headerLength } = frameBody(r.header, r.chunks);
    const back = JSON.parse(body.subarray(0, headerLength).toString()) as { outputs: Array<{ parameters?: { binary_data_size: number } }> };
    const size = back.outputs[0]!.parameters!.binary_data_size;
    expect(
      Array.from(new Float32Array(body.buffer.slice(body.byteOffset + headerLength!, body.byteOffset + headerLength! + size))),
    ).toEqual([1.5, -2, 3]);
  });

  it('keeps the order asked for and leaves out names the model did not return', () => {
    const r = buildV2InferResponse('m', 'i', outputs, ['z', 'nope', 'y'], () => true);
    expect(r.header.outputs.map((o) => o.name)).toEqual(['z', 'y']);
    expect(r.chunks).toEqual([bytesOf(z), bytesOf(y)]);
  });
});

describe('bare NaN and Infinity (as tritonclient writes them)', () => {
  it.each([
    ['[NaN, Infinity, -Infinity, 1]', '["NaN", "Infinity", "-Infinity", 1]'],
    ['{"data":[1,NaN]}', '{"data":[1,"NaN"]}'],
    ['{"s":"NaN Infinity \\" NaN","d":[NaN]}', '{"s":"NaN Infinity \\" NaN","d":["NaN"]}'],
    ['{"a":1}', '{"a":1}'],
  ])('%s → %s', (text, want) => {
    expect(quoteNonFinite(text)).toBe(want);
    expect(() => JSON.parse(quoteNonFinite(text))).not.toThrow();
  });

  it('parses into FP inputs', () => {
    const r = parseV2InferRequest(
      JSON.parse(quoteNonFinite('{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[NaN,Infinity,-Infinity]}]}')),
    );
    expect(Array.from(new Float32Array(r.inputs.x!.data.buffer, r.inputs.x!.data.byteOffset, 3))).toEqual([NaN, Infinity, -Infinity]);
  });
});
