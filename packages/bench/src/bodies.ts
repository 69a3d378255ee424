// `pnpm bench:bodies`: large bodies at 8, 64 and 256 MiB, each way. (1) The staging path alone:
// this process stages a body in the blob bucket, an echo in its own process (body-echo.ts) takes
// it and stages it back, this process takes that: MB/s per direction from put start to take end
// (clocks of one host); stored (the reference goes out once the put is done) and streamed (it
// goes out as the put starts, and the take reads while the put writes); and (0) the floor under
// both: the same bytes between the same two processes over core NATS alone (raw-chunks.ts: no
// JetStream, no hashing, chunks of the same size, 8 unanswered). (2) Through a real replica: a worker process serving the `affine` model
// (y = 2x + 1, any shape), request and reply each the body's size: the round trip, model run and
// (de)coding included: direct (the SDK's default since 2026-11-30: the bytes go between the caller
// and the replica over core NATS, bus/direct-body.ts) and, in the same run, through the blob bucket
// (a client with `directBodies: false`, streamed). Real nats-server with its default 1 MiB
// max_payload; medians of `rounds`.
import type { ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlobStore, closeBus, connectBus, objectChunkSize, silentLogger } from '@flotilla/bus';
import { FlotillaClient } from '@flotilla/client';
import { initialOldSpaceMb } from '@flotilla/worker';
import { Head } from '@flotilla/head';
import { NatsServer } from '@flotilla/local';
import { DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION, decode, encode } from '@flotilla/protocol';
import { sampleModelPath } from '@flotilla/sample-models';
import { epochMs, type EchoReply } from './body-echo.js';
import { repoPath } from './deps.js';
import { receiveRaw, sendRaw } from './raw-chunks.js';
import { spawnPeer, stopPeer, workerArgv, workerNodeArgs } from './peer-process.js';
import { checkBody, targetsLine, TARGETS, type TargetCheck } from './bounds.js';
import { table } from './stats.js';

const MiB = 1024 * 1024;

export interface BodiesOptions {
  /** Body sizes (MiB). Default 8, 64, 256. */
  sizesMiB?: number[];
  /** Transfers per size; medians are reported. Default 3. */
  rounds?: number;
  /** Also through a real replica (a worker process). Default true. */
  replica?: boolean;
  /** Progress lines. Default: none. */
  log?: (line: string) => void;
}

export interface BodyFigures {
  sizeMiB: number;
  /** The floor: the same bytes over core NATS alone, per direction (raw-chunks.ts). */
  raw: StagingFigures;
  /** The streamed staging path ÷ the raw floor, request and reply (1 = as fast as core NATS alone). */
  streamedVsRaw: { request: number; reply: number };
  /** The staging path alone, per direction (MB = 10^6 bytes): the reference sent once the put is done. */
  staging: StagingFigures;
  /** The same, streamed: the reference sent as the put starts (what the SDK and replicas do). */
  streamed: StagingFigures;
  /** Through a replica, direct: request + reply round trip, the body's size over half of it, and that ÷ the raw floor's mean of both directions. */
  replica?: ReplicaFigures;
  /** The same through the blob bucket (streamed), the path before direct bodies. */
  replicaStaged?: ReplicaFigures;
}

export interface ReplicaFigures {
  roundTripMs: number;
  mbpsPerDirection: number;
  vsRaw: number;
}

export interface StagingFigures {
  requestMBps: number;
  replyMBps: number;
  roundTripMs: number;
}

export interface BodiesResult {
  maxPayload: number;
  /** The caller's (this process's) --initial-old-space-size, MB; null: V8's own (README: callers moving large bodies should set it). */
  callerInitialOldSpaceMb: number | null;
  rounds: number;
  sizes: BodyFigures[];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mbps = (bytes: number, ms: number): number => +(bytes / ms / 1000).toFixed(1);

function spawnNode(args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawnPeer(process.execPath, args, undefined, { ...process.env, FLOTILLA_LOG_LEVEL: 'warn' });
  let text = '';
  const keep = (d: Buffer) => (text = (text + d.toString()).slice(-8000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output: () => text };
}

async function waitFor(what: string, ok: () => boolean, child: ChildProcess, output: () => string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}:\n${output()}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${ms} ms:\n${output()}`);
    await sleep(20);
  }
}

/** Measures large bodies both ways; see the module comment. */
export async function benchBodies(opts: BodiesOptions = {}): Promise<BodiesResult> {
  const sizesMiB = opts.sizesMiB ?? [8, 64, 256];
  const rounds = opts.rounds ?? 3;
  const log = opts.log ?? (() => undefined);
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const nats = await NatsServer.start();
    cleanups.push(() => nats.stop());
    const cluster = `bodies${Math.random().toString(36).slice(2, 8)}`;
    const bucket = `flotilla_${cluster}_blobs`;
    const subject = `bench.${cluster}.echo`;
    const nc = await connectBus({ servers: nats.url, name: 'bench-bodies' });
    cleanups.push(() => closeBus(nc));
    const blobs = new BlobStore(nc, bucket);
    const maxPayload = nc.info?.max_payload ?? 0;

    const chunkBytes = objectChunkSize(nc);
    // The echo stands in for a replica: it starts as a worker process does (WORKER_NODE_FLAGS).
    const echo = spawnNode([
      ...workerNodeArgs(),
      repoPath('packages/bench/dist/body-echo.js'),
      nats.url,
      bucket,
      subject,
      String(chunkBytes),
    ]);
    cleanups.push(() => stopPeer(echo.child));
    await waitFor('the body echo', () => echo.output().includes('ready'), echo.child, echo.output);

    let replica: { client: FlotillaClient; staged: FlotillaClient } | undefined;
    if (opts.replica !== false) {
      const head = await Head.start({ cluster, bus: { servers: nats.url }, logger: silentLogger() });
      cleanups.push(() => head.stop());
      const cacheDir = mkdtempSync(join(os.tmpdir(), 'flotilla-bodies-'));
      cleanups.push(async () => rmSync(cacheDir, { recursive: true, force: true }));
      const worker = spawnNode(workerArgv({ nats: nats.url, cluster, id: 'bodies-w', cacheDir }));
      cleanups.push(() => stopPeer(worker.child));
      await waitFor('the worker', () => head.registry.running().length > 0, worker.child, worker.output);
      const client = new FlotillaClient({ servers: nats.url, cluster });
      cleanups.push(() => client.close());
      const staged = new FlotillaClient({
        servers: nats.url,
        cluster,
        directBodies: false,
        streamBodies: process.env.BENCH_STREAM_BODIES !== '0',
      });
      cleanups.push(() => staged.close());
      await client.deploy(sampleModelPath('affine'), 'affine', { device: 'cpu', profile: { enabled: false } });
      replica = { client, staged };
    }

    // One untimed 8 MiB round each way first: both processes' JIT and the bucket warm.
    const warm = await blobs.put(randomFillSync(new Uint8Array(8 * MiB)));
    const warmed = decode<EchoReply>((await nc.request(subject, encode({ v: PROTOCOL_VERSION, blob: warm }), { timeout: 60_000 })).data);
    if (warmed.blob) await blobs.take(warmed.blob, 8 * MiB);
    // (Twice each: a client's first request goes to the queue group, before it has learnt the replica.)
    for (const c of replica ? [replica.client, replica.client, replica.staged, replica.staged] : []) {
      await c.infer('affine', { x: { dtype: 'float32', dims: [1, 1, 1024, 2048], data: new Float32Array(2 * MiB) } });
    }

    // The raw floor's return leg: the echo sends its times, then the body.
    let rawBack: ((body: Uint8Array) => void) | undefined;
    let rawTimes: EchoReply | undefined;
    receiveRaw(nc, `${subject}.raw.back`, (body) => rawBack?.(body));
    nc.subscribe(`${subject}.raw.times`, {
      callback: (_e, m) => {
        rawTimes = decode<EchoReply>(m.data);
      },
    });
    const raw = async (data: Uint8Array): Promise<StagingFigures> => {
      const req: number[] = [];
      const rep: number[] = [];
      const rtt: number[] = [];
      for (let r = 0; r < rounds; r++) {
        rawTimes = undefined;
        const t0 = epochMs();
        const back = new Promise<Uint8Array>((resolve) => (rawBack = resolve));
        await sendRaw(nc, `${subject}.raw`, data, { chunkBytes, timeoutMs: 60_000 });
        const body = await back;
        const t1 = epochMs();
        if (!rawTimes) throw new Error('the body echo sent no times for a raw body');
        const times: EchoReply = rawTimes;
        if (!Buffer.from(body.buffer, body.byteOffset, body.byteLength).equals(Buffer.from(data.buffer))) {
          throw new Error(`the ${data.byteLength} B raw body came back different`);
        }
        req.push(times.takenAt! - t0);
        rep.push(t1 - times.putAt!);
        rtt.push(t1 - t0);
      }
      return {
        requestMBps: mbps(data.byteLength, median(req)),
        replyMBps: mbps(data.byteLength, median(rep)),
        roundTripMs: +median(rtt).toFixed(1),
      };
    };
    await raw(randomFillSync(new Uint8Array(8 * MiB)));

    const sizes: BodyFigures[] = [];
    for (const sizeMiB of sizesMiB) {
      // The whole body within Flotilla's limit (a request of exactly 256 MiB of tensor would not be).
      const bytes = Math.min(sizeMiB * MiB, DEFAULT_MAX_MESSAGE_BYTES - 64 * 1024);
      const data = randomFillSync(new Uint8Array(bytes));
      const staged = async (streamed: boolean): Promise<StagingFigures> => {
        const req: number[] = [];
        const rep: number[] = [];
        const rtt: number[] = [];
        for (let r = 0; r < rounds; r++) {
          const t0 = epochMs();
          const ref = streamed ? (await blobs.stream(data)).ref : await blobs.put(data);
          const msg = await nc.request(subject, encode({ v: PROTOCOL_VERSION, blob: ref }), { timeout: 120_000 });
          const reply = decode<EchoReply>(msg.data);
          if (!reply.blob || reply.takenAt === undefined || reply.putAt === undefined) throw new Error(`body echo: ${reply.error}`);
          const back = await blobs.take(reply.blob, 2 * bytes);
          const t1 = epochMs();
          if (!Buffer.from(back.buffer, back.byteOffset, back.byteLength).equals(Buffer.from(data.buffer))) {
            throw new Error(`the ${sizeMiB} MiB body came back different`);
          }
          req.push(reply.takenAt - t0);
          rep.push(t1 - reply.putAt);
          rtt.push(t1 - t0);
        }
        return { requestMBps: mbps(bytes, median(req)), replyMBps: mbps(bytes, median(rep)), roundTripMs: +median(rtt).toFixed(1) };
      };
      const rawFigures = await raw(data);
      const staging = await staged(false);
      const streamed = await staged(true);
      const figures: BodyFigures = {
        sizeMiB,
        raw: rawFigures,
        streamedVsRaw: {
          request: +(streamed.requestMBps / rawFigures.requestMBps).toFixed(2),
          reply: +(streamed.replyMBps / rawFigures.replyMBps).toFixed(2),
        },
        staging,
        streamed,
      };
      if (replica) {
        const n = Math.floor(bytes / 4 / 1024) * 1024;
        const x = new Float32Array(n).fill(0.5);
        const rawMean = (rawFigures.requestMBps + rawFigures.replyMBps) / 2;
        // Rounds alternate direct and staged: the first round at a new size pays for fresh memory in
        // every process, and going first at every size would charge it to one path.
        const times = { direct: [] as number[], staged: [] as number[] };
        for (let r = 0; r < rounds; r++) {
          for (const [path, client] of [
            ['direct', replica.client],
            ['staged', replica.staged],
          ] as const) {
            const t0 = performance.now();
            const y = await client.infer(
              'affine',
              { x: { dtype: 'float32', dims: [1, 1, 1024, n / 1024], data: x } },
              { timeoutMs: 120_000 },
            );
            times[path].push(performance.now() - t0);
            if ((y.y!.data as Float32Array)[n - 1] !== 2) throw new Error('the replica answered a wrong value');
          }
        }
        const figuresOf = (ts: number[]): ReplicaFigures => {
          const ms = median(ts);
          const perDirection = mbps(n * 4, ms / 2);
          return { roundTripMs: +ms.toFixed(1), mbpsPerDirection: perDirection, vsRaw: +(perDirection / rawMean).toFixed(2) };
        };
        figures.replica = figuresOf(times.direct);
        figures.replicaStaged = figuresOf(times.staged);
      }
      log(
        `bodies: ${sizeMiB} MiB: raw NATS request ${figures.raw.requestMBps} MB/s, reply ${figures.raw.replyMBps} MB/s;` +
          ` staging request ${figures.staging.requestMBps} MB/s, reply ${figures.staging.replyMBps} MB/s` +
          ` (round trip ${figures.staging.roundTripMs} ms); streamed request ${figures.streamed.requestMBps} MB/s,` +
          ` reply ${figures.streamed.replyMBps} MB/s (round trip ${figures.streamed.roundTripMs} ms;` +
          ` ÷ raw ${figures.streamedVsRaw.request} / ${figures.streamedVsRaw.reply})` +
          (figures.replica
            ? `; through a replica direct ${figures.replica.roundTripMs} ms = ${figures.replica.mbpsPerDirection} MB/s per direction (÷ raw ${figures.replica.vsRaw}),` +
              ` staged ${figures.replicaStaged!.roundTripMs} ms = ${figures.replicaStaged!.mbpsPerDirection} MB/s`
            : ''),
      );
      sizes.push(figures);
    }
    return { maxPayload, callerInitialOldSpaceMb: initialOldSpaceMb() ?? null, rounds, sizes };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}

/** Each body size's target check (bounds.ts checkBody): direct through a replica against raw NATS. */
export function bodyTargets(r: BodiesResult): TargetCheck[] {
  return r.sizes.map((s) => checkBody(s.sizeMiB, s.replica?.mbpsPerDirection ?? null, s.raw));
}

/** The figures as a table (pnpm bench prints it after the models). */
export function bodiesText(r: BodiesResult): string {
  const pair = (f: StagingFigures) => `${f.requestMBps} / ${f.replyMBps}`;
  const rows = r.sizes.map((s) => [
    `${s.sizeMiB} MiB`,
    pair(s.raw),
    pair(s.staging),
    `${pair(s.streamed)} (${s.streamedVsRaw.request} / ${s.streamedVsRaw.reply})`,
    s.replicaStaged ? `${s.replicaStaged.mbpsPerDirection} (${s.replicaStaged.vsRaw})` : '-',
    s.replica ? `${s.replica.mbpsPerDirection} (${s.replica.vsRaw})` : '-',
    s.replica ? `${(s.replica.mbpsPerDirection / TARGETS.bodyMBps).toFixed(2)}` : '-',
  ]);
  return [
    `== large bodies (max_payload ${r.maxPayload} B; medians of ${r.rounds}; MB/s per direction, request / reply; unpinned: caller, nats-server and worker share the cores;` +
      ` caller ${r.callerInitialOldSpaceMb === null ? "with V8's own old-space sizing" : `--initial-old-space-size=${r.callerInitialOldSpaceMb}`})`,
    table(
      [
        'body',
        'raw NATS (floor)',
        'stored',
        'streamed (÷ raw)',
        'replica, staged (÷ raw)',
        'replica, direct (÷ raw)',
        `direct ÷ ${TARGETS.bodyMBps} MB/s`,
      ],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    `targets (issue 13; the bound: raw NATS moving the body there and back): ${targetsLine(bodyTargets(r), 'on this machine')}`,
  ].join('\n');
}

if (process.argv[1]?.endsWith('bodies.js')) {
  benchBodies({ log: (line) => console.log(line) })
    .then((result) => {
      console.log(bodiesText(result));
      console.log(JSON.stringify(result));
      process.exit(0);
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
