// How V8 collects the worker's garbage. onnxruntime-node runs `session.run` on the event-loop
// thread, and V8's concurrent and parallel collector threads then compete with it (and with
// onnxruntime's own intra-op threads) for the cores the worker was given: on one pinned core,
// convnet served 426–580 items/s with them and 600–676 with `--single-threaded-gc` (README,
// "Where a request's time goes"). The flag can only be given at process start (V8 aborts when it is
// set at run time, and NODE_OPTIONS refuses it), so every launcher of a worker process passes it:
// the CLI's shebang, `flotilla up`, the container's entrypoint, the tests and the benchmarks.

/** Node flags a worker process starts with. */
export const WORKER_NODE_FLAGS: readonly string[] = ['--single-threaded-gc'];

export type GcMode = 'single-threaded' | 'concurrent';

/** The collector this process runs with, from its Node flags. */
export function gcMode(execArgv: readonly string[] = process.execArgv): GcMode {
  return execArgv.includes('--single-threaded-gc') ? 'single-threaded' : 'concurrent';
}
