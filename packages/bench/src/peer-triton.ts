// (5b) of `pnpm bench`: NVIDIA Triton through nvidia-pytriton (peers/triton_bench.py in
// .cache/triton-venv). By default the script runs only its server half, on the replica's core, and
// peer-triton-load.ts drives it from the bench's core; BENCH_TRITON_CLIENT=python runs the script
// end to end with tritonclient as the load generator.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { repoPath } from './deps.js';
import { peerSelection } from './peer-report.js';
import {
  affinityOf,
  peerScriptArgs,
  runJsonChild,
  runPythonPeer,
  spawnPeer,
  stopPeer,
  untilLine,
  type PythonPeerOptions,
} from './peer-process.js';
import type { TritonLoadArgs, TritonLoadRun } from './peer-triton-load.js';
import { turnArgs, type PeerTurns } from './load-windows.js';

export interface TritonRun {
  itemsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  sent: number;
  ok: number;
  errored: number;
  errors: Record<string, number>;
  concurrency: number;
  maxBatchSize: number;
  batchWaitMs: number;
  meanBatch: number;
  startupS: number;
  tritonVersion: string;
  pytritonVersion: string;
  /** The load generator: Node's (default) or tritonclient's (BENCH_TRITON_CLIENT=python). */
  client: string;
  ortVersion: string;
  /** The server half (PyTriton; tritonserver and its stub are its children). */
  replicaAffinity: string;
  driverAffinity: string;
  /** items/s of each window taken in turns with Flotilla's load (load-windows.ts). */
  turns?: number[];
}

/** The Triton venv's python, or why Triton is not measured. */
export function tritonPython(env: NodeJS.ProcessEnv): { python: string } | { skipped: string } {
  const sel = peerSelection(env).triton;
  if ('skipped' in sel) return sel;
  if (process.platform !== 'linux' || !['x64', 'arm64'].includes(process.arch))
    return {
      skipped: `nvidia-pytriton's tritonserver is built for Linux x86_64/aarch64 only (this is ${process.platform} ${process.arch})`,
    };
  const python = repoPath('.cache/triton-venv/bin/python');
  return existsSync(python)
    ? { python }
    : { skipped: 'no .cache/triton-venv (run `bash packages/bench/peers/setup triton` to measure Triton)' };
}

export interface TritonOptions extends PythonPeerOptions {
  /** Every input of one request (the Node load generator sends them all). */
  inputs: Array<{ name: string; dims: number[] }>;
  /** `python`: tritonclient.http.aio drives the load (triton_bench.py end to end); else Node. */
  client?: 'node' | 'python';
  /** Windows after the run, in turns with Flotilla's load (load-windows.ts; the Node load generator only). */
  turns?: PeerTurns;
}

/**
 * Triton through PyTriton: the server half (tritonserver, its Python-backend stub and the
 * onnxruntime callable) on the replica's core, the HTTP load generator on the bench's.
 */
export function runTriton(o: TritonOptions): Promise<TritonRun> {
  return o.client === 'python' ? runTritonPython(o) : runTritonNode(o);
}

/** Free TCP ports on 127.0.0.1 (closed again before they are handed out). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** triton_bench.py's server half on the replica's core, peer-triton-load.ts on the bench's. */
async function runTritonNode(o: TritonOptions): Promise<TritonRun> {
  const t0 = performance.now();
  const [http, grpc, metrics] = await freePorts(3);
  const token = randomBytes(18).toString('base64url');
  const serve = spawnPeer(
    o.python,
    [
      ...peerScriptArgs('triton_bench.py', o),
      '--serve',
      '--ports',
      `${http},${grpc},${metrics}`,
      // One argument: a base64url token may start with '-', which argparse would take for an option.
      `--token=${token}`,
    ],
    o.cores?.replica,
  );
  try {
    const ready = await untilLine(
      serve,
      'the Triton server half',
      (line) => (line.startsWith('{') ? (JSON.parse(line) as { ortVersion: string; pytritonVersion: string; pid: number }) : undefined),
      120_000,
    );
    const startupS = Math.round((performance.now() - t0) / 10) / 100;
    const args: TritonLoadArgs = {
      url: `http://127.0.0.1:${http}`,
      model: 'bench',
      token,
      inputs: o.inputs,
      concurrency: o.concurrency,
      durationMs: o.durationMs,
      warmupMs: o.warmupMs,
      ...turnArgs(o.turns),
    };
    const argv = [repoPath('packages/bench/dist/peer-triton-load.js'), JSON.stringify(args)];
    const load = await runJsonChild<TritonLoadRun>(
      o.cores ? 'taskset' : process.execPath,
      o.cores ? ['-c', o.cores.bench, process.execPath, ...argv] : argv,
      'triton load generator',
      undefined,
      o.turns?.onPause,
    );
    return {
      ...load,
      maxBatchSize: o.maxBatchSize,
      batchWaitMs: o.batchWaitMs,
      startupS,
      pytritonVersion: ready.pytritonVersion,
      ortVersion: ready.ortVersion,
      replicaAffinity: affinityOf(ready.pid),
      driverAffinity: load.loadAffinity,
    };
  } finally {
    // PyTriton stops tritonserver on SIGTERM (exit timeout 5 s).
    await stopPeer(serve, 40_000);
  }
}

/** triton_bench.py end to end: its server half on the replica's core, tritonclient on the bench's. */
function runTritonPython(o: TritonOptions): Promise<TritonRun> {
  return runPythonPeer<TritonRun>('triton_bench.py', o, 'triton bench');
}
