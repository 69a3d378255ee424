// ThreadSession against onnxruntime-node's own session, on real sample models: the same metadata
// and outputs, errors that reach the caller, an event loop that keeps turning while a run takes
// its time, and a thread that ends with the session (or fails its runs when it dies).
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { ThreadSession, openSession } from './session-thread.js';

const OPTIONS = { intraOpNumThreads: 1, executionMode: 'sequential' as const };

/** Timer ticks (1 ms interval) the event loop ran while `f` was pending. */
async function ticksDuring(f: () => Promise<unknown>): Promise<number> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    await f();
  } finally {
    clearInterval(timer);
  }
  return ticks;
}

describe('ThreadSession (an onnxruntime session on a thread of its own)', () => {
  let inLoop: ort.InferenceSession;
  let threaded: ThreadSession;
  beforeAll(async () => {
    inLoop = await ort.InferenceSession.create(sampleModelPath('conv-classifier'), OPTIONS);
    threaded = await ThreadSession.create(sampleModelPath('conv-classifier'), OPTIONS);
  });
  afterAll(async () => {
    await inLoop?.release();
    await threaded?.release();
  });

  it('reports the same inputs and outputs as the session on the event loop', () => {
    expect(threaded.inputNames).toEqual(inLoop.inputNames);
    expect(threaded.outputNames).toEqual(inLoop.outputNames);
    expect(threaded.inputMetadata).toEqual(inLoop.inputMetadata);
    expect(threaded.outputMetadata).toEqual(inLoop.outputMetadata);
  });

  it.each([
    [1, 64, 64],
    [3, 32, 48],
  ])('gives the same outputs (batch %i, %i×%i) and leaves the caller its input', async (n, h, w) => {
    const data = randomFloats(n * 3 * h * w, n * h);
    const copy = data.slice();
    const feeds = { x: new ort.Tensor('float32', data, [n, 3, h, w]) };
    const want = (await inLoop.run(feeds)).logits!;
    const got = (await threaded.run(feeds)).logits!;
    expect(got).toBeInstanceOf(ort.Tensor);
    expect(got.type).toBe('float32');
    expect(got.dims).toEqual(want.dims);
    expect([...(got.data as Float32Array)]).toEqual([...(want.data as Float32Array)]);
    expect(data).toEqual(copy); // copied across, not moved: the caller's buffer stays usable
  });

  it('copies only the view it is given, not the rest of its buffer', async () => {
    const per = 3 * 64 * 64;
    const big = randomFloats(4 * per, 5);
    const view = big.subarray(per, 2 * per);
    const want = (await inLoop.run({ x: new ort.Tensor('float32', view.slice(), [1, 3, 64, 64]) })).logits!;
    const got = (await threaded.run({ x: new ort.Tensor('float32', view, [1, 3, 64, 64]) })).logits!;
    expect([...(got.data as Float32Array)]).toEqual([...(want.data as Float32Array)]);
  });

  it('runs several posted at once, each answered with its own outputs', async () => {
    const feeds = [1, 2, 3, 4].map((seed) => ({ x: new ort.Tensor('float32', randomFloats(3 * 40 * 40, seed), [1, 3, 40, 40]) }));
    const want = await Promise.all(feeds.map(async (f) => [...((await inLoop.run(f)).logits!.data as Float32Array)]));
    const got = await Promise.all(feeds.map(async (f) => [...((await threaded.run(f)).logits!.data as Float32Array)]));
    expect(got).toEqual(want);
  });

  it("passes onnxruntime's error to the caller and keeps serving", async () => {
    await expect(threaded.run({ x: new ort.Tensor('float32', new Float32Array(3 * 8), [1, 3, 8]) })).rejects.toThrow(
      /rank|dimension|Invalid/i,
    );
    await expect(threaded.run({ nope: new ort.Tensor('float32', new Float32Array(1), [1]) })).rejects.toThrow(/input|nope/i);
    const ok = await threaded.run({ x: new ort.Tensor('float32', randomFloats(3 * 32 * 32, 1), [1, 3, 32, 32]) });
    expect(ok.logits!.dims).toEqual([1, 10]);
  });

  it('leaves the event loop free while a long run takes its time; on the event loop, the run holds it', async () => {
    const feeds = { x: new ort.Tensor('float32', randomFloats(32 * 3 * 64 * 64, 9), [32, 3, 64, 64]) };
    const started = performance.now();
    await inLoop.run(feeds);
    const runMs = performance.now() - started;
    expect(runMs).toBeGreaterThan(5); // long enough for a 1 ms timer to fire several times
    // onnxruntime-node runs a session synchronously on the calling thread: no timer fires during it.
    expect(await ticksDuring(() => inLoop.run(feeds))).toBeLessThanOrEqual(1);
    expect(await ticksDuring(() => threaded.run(feeds))).toBeGreaterThanOrEqual(3);
  });
});

describe('ThreadSession lifecycle', () => {
  it("rejects with onnxruntime's error for a file that is not a model, or no file", async () => {
    const bad = join(tmpdir(), `flotilla-not-a-model-${process.pid}.onnx`);
    writeFileSync(bad, 'not a model');
    await expect(ThreadSession.create(bad, OPTIONS)).rejects.toThrow(/protobuf|parse|load|model/i);
    await expect(ThreadSession.create(join(tmpdir(), 'missing-model-file.onnx'), OPTIONS)).rejects.toThrow(/exist|no such|load|file/i);
  });

  it('runs what was posted before release, then refuses runs', async () => {
    const s = await ThreadSession.create(sampleModelPath('mlp'), OPTIONS);
    const pending = s.run({ x: new ort.Tensor('float32', randomFloats(16, 3), [1, 16]) });
    const released = s.release();
    expect((await pending).y!.dims).toEqual([1, 4]);
    await released;
    await expect(s.run({ x: new ort.Tensor('float32', randomFloats(16, 3), [1, 16]) })).rejects.toThrow(/released/);
    await s.release(); // twice is fine
  });

  it('fails every run once its thread is gone', async () => {
    const s = await ThreadSession.create(sampleModelPath('mlp'), OPTIONS);
    // (Not while a run is in flight: ending a thread inside onnxruntime's native run can abort the process.)
    await (s as unknown as { thread: { terminate(): Promise<number> } }).thread.terminate();
    await expect(s.run({ x: new ort.Tensor('float32', randomFloats(16, 4), [1, 16]) })).rejects.toThrow(/thread exited/);
    await s.release();
  });

  it('opens on the host asked for', async () => {
    const a = await openSession('thread', sampleModelPath('mlp'), OPTIONS);
    const b = await openSession('event-loop', sampleModelPath('mlp'), OPTIONS);
    expect(a).toBeInstanceOf(ThreadSession);
    expect(b).not.toBeInstanceOf(ThreadSession);
    await Promise.all([a.release(), b.release()]);
  });
});
