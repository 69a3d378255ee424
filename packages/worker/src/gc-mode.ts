// How V8 collects the worker's garbage. onnxruntime-node runs `session.run` on the event-loop
// thread, and V8's concurrent and parallel collector threads then compete with it (and with
// onnxruntime's own intra-op threads) for the cores the worker was given: on one pinned core,
// convnet served 426–580 items/s with them and 600–676 with `--single-threaded-gc` (README,
// "Where a request's time goes").
// And V8 starts the old generation small and sizes its limit by what survives: in a process whose
// heap holds what Flotilla's does (the protocol's schemas: 9–18 MB), the garbage of NATS traffic
// in large messages (49 KB requests at thousands a second, 1 MiB chunks of staged bodies) met
// that limit every 40–60 ms, and each full mark-compact marked the whole heap (3–19 ms). With the
// old generation's first limit at INITIAL_OLD_SPACE_MB they come a few times a run instead:
// conv-classifier on one pinned core 3,072–3,191 items/s against 2,657–2,896 (the worker's CPU
// besides the model 79–91 µs a request against 114–160), and a plain NATS transfer between two
// such processes 300–370 MB/s against 200–250 (README, "Large bodies"). The cost is up to that many
// MB of garbage held between collections.
// Neither flag can be set at run time (V8 aborts on the first; the second is then ignored) nor
// through NODE_OPTIONS (refused), so every launcher of a Flotilla process passes them: the CLI's
// shebang, `pnpm flotilla`, `flotilla up`, the container's entrypoint, the tests and the benchmarks.

/** The old generation's first limit, MB (V8's `--initial-old-space-size`). */
export const INITIAL_OLD_SPACE_MB = 64;

/** Node flags a worker process (and every Flotilla process the CLI starts) starts with. */
export const WORKER_NODE_FLAGS: readonly string[] = ['--single-threaded-gc', `--initial-old-space-size=${INITIAL_OLD_SPACE_MB}`];

export type GcMode = 'single-threaded' | 'concurrent';

/** The collector this process runs with, from its Node flags. */
export function gcMode(execArgv: readonly string[] = process.execArgv): GcMode {
  return execArgv.includes('--single-threaded-gc') ? 'single-threaded' : 'concurrent';
}

/** The old generation's first limit this process was started with (MB), from its Node flags; undefined: V8's own. */
export function initialOldSpaceMb(execArgv: readonly string[] = process.execArgv): number | undefined {
  for (const a of execArgv) {
    const m = /^--initial[-_]old[-_]space[-_]size=(\d+)$/.exec(a);
    if (m) return Number(m[1]);
  }
  return undefined;
}
