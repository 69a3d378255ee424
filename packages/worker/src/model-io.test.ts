import { ErrorCode, fromTypedArray, type WireTensors } from '@flotilla/protocol';
import { concatBatch, describeModel, firstRows, splitBatch, validateInputs, wireSignature } from './model-io.js';

const sig = describeModel(
  [
    { name: 'x', isTensor: true, type: 'float32', shape: ['N', 2] },
    { name: 'ids', isTensor: true, type: 'int64', shape: ['N', 'L'] },
  ],
  [{ name: 'y', isTensor: true, type: 'float32', shape: ['N', 3] }],
);

function req(n: number, l = 1): WireTensors {
  return {
    x: fromTypedArray(
      'float32',
      [n, 2],
      new Float32Array(n * 2).map((_, i) => i),
    ),
    ids: fromTypedArray('int64', [n, l], new BigInt64Array(n * l)),
  };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('model signature and validation', () => {
  it('detects the batch axis from symbolic leading dims', () => {
    expect(sig.batchAxis).toBe(true);
    const fixed = describeModel(
      [{ name: 'x', isTensor: true, type: 'float32', shape: [1, 8] }],
      [{ name: 'y', isTensor: true, type: 'float32', shape: [1, 8] }],
    );
    expect(fixed.batchAxis).toBe(false);
  });

  it('accepts matching inputs and keys them by non-batch dims', () => {
    expect(validateInputs(sig, req(3))).toEqual({ key: 'x:2|ids:1', items: 3 });
    expect(validateInputs(sig, req(1, 5)).key).not.toEqual(validateInputs(sig, req(1, 4)).key);
  });

  it.each([
    ['missing input', () => ({ x: req(1).x }), "inputs do not match the model: missing 'ids' (expected 'x', 'ids')"],
    ['unknown input', () => ({ ...req(1), extra: req(1).x }), "inputs do not match the model: unknown 'extra' (expected 'x', 'ids')"],
    [
      'one missing, one unknown (as many names as the model has)',
      () => ({ x: req(1).x, id: req(1).ids }),
      "inputs do not match the model: missing 'ids'; unknown 'id' (expected 'x', 'ids')",
    ],
    [
      'wrong dtype',
      () => ({ ...req(1), x: fromTypedArray('float64', [1, 2], new Float64Array(2)) }),
      "input 'x' must be float32, got float64",
    ],
    [
      'wrong rank',
      () => ({ ...req(1), x: fromTypedArray('float32', [2], new Float32Array(2)) }),
      "input 'x' must have rank 2 [?, 2], got [2]",
    ],
    [
      'wrong static dim',
      () => ({ ...req(1), x: fromTypedArray('float32', [1, 3], new Float32Array(3)) }),
      "input 'x' dim 1 must be 2 [?, 2], got [1, 3]",
    ],
    ['disagreeing batch sizes', () => ({ ...req(2), ids: req(1).ids }), "inputs disagree on the batch size (dim 0): 'ids' has 1, others 2"],
    ['an empty batch', () => req(0), "input 'x' has an empty batch (dim 0 is 0)"],
  ])('rejects %s with INPUT_MISMATCH and says what is wrong', (_name, make, message) => {
    expect(code(() => validateInputs(sig, make() as WireTensors))).toBe(ErrorCode.INPUT_MISMATCH);
    expect(() => validateInputs(sig, make() as WireTensors)).toThrow(message);
  });

  it('keys by every non-batch dim, rank 1 to 4', () => {
    const s = describeModel(
      [
        { name: 'a', isTensor: true, type: 'float32', shape: ['N'] },
        { name: 'b', isTensor: true, type: 'float32', shape: ['N', 3, 'H', 'W'] },
      ],
      [{ name: 'y', isTensor: true, type: 'float32', shape: ['N'] }],
    );
    const inputs = {
      a: fromTypedArray('float32', [2], new Float32Array(2)),
      b: fromTypedArray('float32', [2, 3, 4, 5], new Float32Array(120)),
    };
    expect(validateInputs(s, inputs)).toEqual({ key: 'a:|b:3x4x5', items: 2 });
  });

  it('concatenates along axis 0 and splits outputs back per request', () => {
    const a = req(1);
    const b = req(2);
    const batch = concatBatch(sig, [a, b], 3);
    expect(batch.x!.dims).toEqual([3, 2]);
    expect(Array.from(new Float32Array(batch.x!.data.slice().buffer))).toEqual([0, 1, 0, 1, 2, 3]);
    const y = fromTypedArray(
      'float32',
      [3, 3],
      new Float32Array(9).map((_, i) => i),
    );
    const parts = splitBatch({ y }, [1, 2]);
    expect(parts[0]!.y!.dims).toEqual([1, 3]);
    expect(Array.from(new Float32Array(parts[1]!.y!.data.slice().buffer))).toEqual([3, 4, 5, 6, 7, 8]);
  });

  it('writes later batches into the buffer of an earlier one when they fit (scratch)', () => {
    const scratch = new Map<string, Uint8Array>();
    const first = concatBatch(sig, [req(2), req(2)], 4, scratch);
    expect(scratch.get('x')!.buffer).toBe(first.x!.data.buffer);
    const smaller = concatBatch(sig, [req(1), req(2)], 3, scratch);
    expect(smaller.x!.data.buffer).toBe(first.x!.data.buffer); // reused
    expect(smaller.x!.data.byteLength).toBe(3 * 2 * 4);
    expect(Array.from(new Float32Array(smaller.x!.data.slice().buffer))).toEqual([0, 1, 0, 1, 2, 3]);
    const larger = concatBatch(sig, [req(3), req(2)], 5, scratch);
    expect(larger.x!.data.buffer).not.toBe(first.x!.data.buffer); // grew: a new buffer, kept next
    expect(scratch.get('x')!.buffer).toBe(larger.x!.data.buffer);
    expect(concatBatch(sig, [req(1)], 1, scratch).x!.data.buffer).not.toBe(larger.x!.data.buffer); // one request: its own bytes
  });

  it('pads a batch with zero rows up to `rows` (a reused buffer too), and firstRows takes back what was asked', () => {
    const scratch = new Map<string, Uint8Array>();
    concatBatch(sig, [req(3), req(3)], 6, scratch); // leaves non-zero bytes in the kept buffers
    const one = req(1);
    const padded = concatBatch(sig, [one], 1, scratch, 4);
    expect(padded.x!.dims).toEqual([4, 2]);
    expect(padded.ids!.dims).toEqual([4, 1]);
    expect(Array.from(new Float32Array(padded.x!.data.slice().buffer))).toEqual([0, 1, 0, 0, 0, 0, 0, 0]);
    expect(padded.x!.data.buffer).not.toBe(one.x!.data.buffer); // a lone request is copied when padded
    const two = concatBatch(sig, [req(1), req(2)], 3, scratch, 4);
    expect(Array.from(new Float32Array(two.x!.data.slice().buffer))).toEqual([0, 1, 0, 1, 2, 3, 0, 0]);
    expect(concatBatch(sig, [req(2), req(2)], 4, scratch, 4).x!.dims).toEqual([4, 2]); // full: nothing to pad

    const y = fromTypedArray(
      'float32',
      [4, 3],
      new Float32Array(12).map((_, i) => i),
    );
    const kept = firstRows({ y }, 3);
    expect(kept.y!.dims).toEqual([3, 3]);
    expect(kept.y!.data.buffer).toBe(y.data.buffer); // a view
    expect(splitBatch(kept, [1, 2]).map((p) => p.y!.dims[0])).toEqual([1, 2]);
    expect(firstRows({ y }, 4).y).toBe(y);
  });
});

describe('reading the signature (dims as onnxruntime-node reports them)', () => {
  const meta = (shape: Array<number | string>) => [{ name: 'x', isTensor: true, type: 'float32', shape }];
  it.each<[string, Array<number | string>, Array<number | null>, Array<number | string | null>, boolean]>([
    // case, onnxruntime's shape, checked shape, published shape, batch axis
    ['static dims', [1, 8], [1, 8], [1, 8], false],
    ['symbolic batch', ['N', 16], [null, 16], ['N', 16], true],
    ['symbolic names kept', ['batch', 'seq'], [null, null], ['batch', 'seq'], true],
    ['dynamic H/W', ['N', 3, 'H', 'W'], [null, 3, null, null], ['N', 3, 'H', 'W'], true],
    ['unnamed dynamic dim (empty string)', ['N', 3, '', 'W'], [null, 3, null, null], ['N', 3, null, 'W'], true],
    ['unnamed dynamic dim (negative)', [-1, 4], [null, 4], [null, 4], true],
    ['scalar', [], [], [], false],
  ])('%s', (_case, shape, checked, published, batchAxis) => {
    const sig = describeModel(meta(shape), meta(shape));
    expect(sig.inputs[0]!.shape).toEqual(checked);
    expect(sig.batchAxis).toBe(batchAxis);
    expect(wireSignature(sig)).toEqual({
      inputs: [{ name: 'x', dtype: 'float32', shape: published }],
      outputs: [{ name: 'x', dtype: 'float32', shape: published }],
      batchAxis,
    });
  });

  it('publishes nothing it cannot fit in the protocol (the head would refuse the whole heartbeat)', () => {
    expect(wireSignature(describeModel(meta(['N', 2]), meta(['N', 'x'.repeat(65)])))).toBeUndefined();
    expect(wireSignature(describeModel(meta(['N', ...Array<number>(16).fill(1)]), meta(['N'])))).toBeUndefined();
  });
});
