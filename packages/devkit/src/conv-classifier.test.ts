// The sample model conv-classifier in plain onnxruntime-node: logits [N, 10] at any image size
// (dynamic H and W), the same per item whether an item runs alone or in a batch, and different
// for different images (not a constant).
import * as ort from 'onnxruntime-node';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';

describe('sample model conv-classifier (in-process)', () => {
  let session: ort.InferenceSession;
  beforeAll(async () => {
    session = await ort.InferenceSession.create(sampleModelPath('conv-classifier'), { intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await session?.release();
  });

  const run = async (n: number, h: number, w: number, seed: number) => {
    const out = await session.run({ x: new ort.Tensor('float32', randomFloats(n * 3 * h * w, seed), [n, 3, h, w]) });
    return out.logits!;
  };

  it('takes [N, 3, H, W] at any H and W and answers logits [N, 10]', async () => {
    expect(session.inputNames).toEqual(['x']);
    for (const [h, w] of [
      [64, 64],
      [32, 48],
      [97, 80],
    ] as const) {
      const y = await run(2, h, w, h * w);
      expect(y.dims).toEqual([2, 10]);
      expect([...(y.data as Float32Array)].every(Number.isFinite)).toBe(true);
    }
  });

  it('gives each item of a batch what it gives that item alone, and different images different logits', async () => {
    const h = 64;
    const w = 64;
    const per = 3 * h * w;
    const batch = randomFloats(4 * per, 7);
    const together = (await session.run({ x: new ort.Tensor('float32', batch, [4, 3, h, w]) })).logits!.data as Float32Array;
    let maxDiff = 0;
    for (let i = 0; i < 4; i++) {
      const alone = (await session.run({ x: new ort.Tensor('float32', batch.slice(i * per, (i + 1) * per), [1, 3, h, w]) })).logits!
        .data as Float32Array;
      for (let k = 0; k < 10; k++) maxDiff = Math.max(maxDiff, Math.abs(alone[k]! - together[i * 10 + k]!));
    }
    expect(maxDiff).toBeLessThan(1e-4);
    const first = [...together.slice(0, 10)];
    const second = [...together.slice(10, 20)];
    expect(first).not.toEqual(second);
  });
});
