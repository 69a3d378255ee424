// An onnxruntime session hosted on its own thread. onnxruntime-node 1.30 creates and runs a
// session synchronously on the calling thread (inside a setImmediate), so a session on the
// worker's event loop holds it for every run and every load: no request is read, decoded or
// answered meanwhile, and two replicas on one worker run one batch at a time however many cores
// it has. A ThreadSession opens the session in a worker thread and runs it there; the event loop
// only posts the inputs and takes the outputs (one copy each way, the output's buffer moved).
// Crossing costs tens of µs a run (bench numbers in the README), which is why the choice between
// the two hosts is a policy (session-plan.ts `chooseSessionHost`).
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { SessionHost } from '@flotilla/protocol';

/** What the worker uses of a session: onnxruntime's own InferenceSession, or a ThreadSession. */
export interface ModelSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

/** A tensor as it crosses to and from the thread: an owned typed array whose buffer is moved, not copied. */
interface Crossing {
  type: ort.Tensor.Type;
  data: ort.Tensor.DataType;
  dims: readonly number[];
}

type FromThread =
  | {
      op: 'opened';
      inputNames: string[];
      outputNames: string[];
      inputMetadata: ort.InferenceSession.ValueMetadata[];
      outputMetadata: ort.InferenceSession.ValueMetadata[];
    }
  | { op: 'ran'; id: number; outputs: Record<string, Crossing> }
  | { op: 'failed'; id: number; message: string }
  | { op: 'released' };

/**
 * The thread's program, sent as source (`eval`): it must not use anything from this module's
 * scope, and it runs as CommonJS whether this module was built as ESM or runs under Jest.
 */
function hostThread(ortPath: string): void {
  /* eslint-disable @typescript-eslint/no-require-imports -- the thread's code is a CommonJS script */
  const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const ortLib = require(ortPath) as typeof import('onnxruntime-node');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const port = parentPort!;
  let session: import('onnxruntime-node').InferenceSession | undefined;
  /** Runs started and not yet settled: a release waits for them (a run on a released session aborts the process). */
  const running = new Set<Promise<unknown>>();
  const owned = (d: ArrayBufferView) =>
    d.byteOffset === 0 && d.byteLength === d.buffer.byteLength && !(d.buffer instanceof SharedArrayBuffer)
      ? d
      : (d as unknown as { slice(): ArrayBufferView }).slice();
  port.on('message', (m: { op: string; id?: number; path?: string; options?: object; feeds?: Record<string, Crossing> }) => {
    if (m.op === 'open') {
      ortLib.InferenceSession.create(m.path!, m.options).then(
        (s) => {
          session = s;
          port.postMessage({
            op: 'opened',
            inputNames: [...s.inputNames],
            outputNames: [...s.outputNames],
            inputMetadata: [...s.inputMetadata],
            outputMetadata: [...s.outputMetadata],
          });
        },
        (err: Error) => port.postMessage({ op: 'failed', id: -1, message: String(err?.message ?? err) }),
      );
    } else if (m.op === 'run') {
      const feeds: Record<string, import('onnxruntime-node').Tensor> = {};
      try {
        for (const [name, t] of Object.entries(m.feeds!)) feeds[name] = new ortLib.Tensor(t.type as never, t.data as never, t.dims);
      } catch (err) {
        port.postMessage({ op: 'failed', id: m.id, message: String((err as Error)?.message ?? err) });
        return;
      }
      const run = session!.run(feeds);
      running.add(run);
      run.finally(() => running.delete(run)).catch(() => undefined);
      run.then(
        (results) => {
          const outputs: Record<string, Crossing> = {};
          const moved: ArrayBuffer[] = [];
          for (const [name, r] of Object.entries(results)) {
            const t = r as import('onnxruntime-node').Tensor;
            // Typed arrays move; anything else (a string tensor's array) is cloned.
            const data = ArrayBuffer.isView(t.data) ? (owned(t.data) as ort.Tensor.DataType) : t.data;
            outputs[name] = { type: t.type, data, dims: t.dims };
            if (ArrayBuffer.isView(data)) moved.push(data.buffer as ArrayBuffer);
          }
          port.postMessage({ op: 'ran', id: m.id, outputs }, moved);
        },
        (err: Error) => port.postMessage({ op: 'failed', id: m.id, message: String(err?.message ?? err) }),
      );
    } else if (m.op === 'release') {
      const done = () => port.postMessage({ op: 'released' });
      void Promise.allSettled([...running]).then(() => (session ? session.release().then(done, done) : done()));
    }
  });
}

/** onnxruntime-node's entry point, for the thread to load the same build as this process. */
const ORT_PATH = createRequire(import.meta.url).resolve('onnxruntime-node');

/** A copy of an input the thread may own (its buffer is moved across, so the caller's stays usable). */
function ownedCopy(data: ort.Tensor.DataType): ort.Tensor.DataType {
  return (data as unknown as { slice(): ort.Tensor.DataType }).slice();
}

export class ThreadSession implements ModelSession {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (o: Record<string, ort.Tensor>) => void; reject: (e: Error) => void }>();
  /** Why the thread is gone (runs fail with it), once it is. */
  private gone: Error | undefined;
  private released: Promise<void> | undefined;

  private constructor(
    private readonly thread: Worker,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[],
    readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[],
  ) {
    thread.on('message', (m: FromThread) => {
      if (m.op !== 'ran' && m.op !== 'failed') return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.settled(m.id);
      if (m.op === 'failed') p.reject(new Error(m.message));
      else {
        const out: Record<string, ort.Tensor> = {};
        for (const [name, t] of Object.entries(m.outputs)) out[name] = new ort.Tensor(t.type as never, t.data as never, t.dims);
        p.resolve(out);
      }
    });
    const fail = (err: Error) => {
      this.gone ??= err;
      for (const [id, p] of this.pending) {
        this.settled(id);
        p.reject(this.gone);
      }
    };
    thread.on('error', (err) => fail(new Error(`the session's thread failed: ${err.message}`)));
    thread.on('exit', (code) => fail(new Error(`the session's thread exited (code ${code})`)));
  }

  /** Opens the model at `path` with `options` on a new thread; rejects with onnxruntime's error when it cannot. */
  static async create(path: string, options: ort.InferenceSession.SessionOptions = {}): Promise<ThreadSession> {
    const thread = new Worker(`(${hostThread.toString()})(${JSON.stringify(ORT_PATH)})`, { eval: true });
    try {
      const opened = await new Promise<FromThread & { op: 'opened' }>((resolve, reject) => {
        const onMessage = (m: FromThread) => {
          thread.off('error', reject);
          thread.off('exit', onExit);
          if (m.op === 'opened') resolve(m);
          else reject(new Error(m.op === 'failed' ? m.message : `unexpected '${m.op}' from the session's thread`));
        };
        const onExit = (code: number) => reject(new Error(`the session's thread exited (code ${code}) while opening`));
        thread.once('message', onMessage);
        thread.once('error', reject);
        thread.once('exit', onExit);
        thread.postMessage({ op: 'open', path, options });
      });
      const s = new ThreadSession(thread, opened.inputNames, opened.outputNames, opened.inputMetadata, opened.outputMetadata);
      thread.unref(); // only a run in flight keeps the process alive (see settled)
      return s;
    } catch (err) {
      await thread.terminate();
      throw err;
    }
  }

  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    if (this.released) return Promise.reject(new Error('the session was released'));
    if (this.gone) return Promise.reject(this.gone);
    const crossing: Record<string, Crossing> = {};
    const moved: ArrayBuffer[] = [];
    for (const [name, t] of Object.entries(feeds)) {
      const data = ownedCopy(t.data);
      crossing[name] = { type: t.type, data, dims: t.dims };
      if (ArrayBuffer.isView(data)) moved.push(data.buffer as ArrayBuffer);
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      try {
        this.thread.postMessage({ op: 'run', id, feeds: crossing }, moved);
      } catch (err) {
        reject(err as Error); // not cloneable: nothing was posted
        return;
      }
      if (this.pending.size === 0) this.thread.ref();
      this.pending.set(id, { resolve, reject });
    });
  }

  private settled(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.thread.unref();
  }

  /** Releases the session (after the runs already posted) and ends its thread. */
  release(): Promise<void> {
    this.released ??= (async () => {
      if (!this.gone) {
        this.thread.ref();
        await new Promise<void>((resolve) => {
          const done = () => resolve();
          this.thread.on('message', (m: FromThread) => m.op === 'released' && done());
          this.thread.once('exit', done);
          this.thread.postMessage({ op: 'release' });
        });
      }
      await this.thread.terminate();
    })();
    return this.released;
  }
}

/** Opens a session on the chosen host. */
export function openSession(host: SessionHost, path: string, options: ort.InferenceSession.SessionOptions): Promise<ModelSession> {
  return host === 'thread' ? ThreadSession.create(path, options) : ort.InferenceSession.create(path, options);
}
