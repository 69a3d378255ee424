// The far end of `bench:bodies`' staging path, in its own process (as a replica is): takes each
// staged body named on its subject from the blob bucket, stages the same bytes back and answers
// with their reference and when (epoch ms) the take finished and the put began. A streamed
// reference (with `nuid`) is answered with a streamed one, sent as its staging starts. Bodies sent
// raw (raw-chunks.ts) on `<subject>.raw` go back raw on `<subject>.raw.back`, after the times on
// `<subject>.raw.times`. Usage: node body-echo.js <nats url> <bucket> <subject> [chunk bytes]
import { BlobStore, closeBus, connectBus } from '@flotilla/bus';
import { PROTOCOL_VERSION, decode, encode, parseBlobRef } from '@flotilla/protocol';
import { receiveRaw, sendRaw } from './raw-chunks.js';

/** Wall clock in epoch ms with sub-millisecond resolution, comparable across processes on one host. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

/** What the echo answers. */
export interface EchoReply {
  v: number;
  blob?: { name: string; size: number; nuid?: string };
  takenAt?: number;
  putAt?: number;
  error?: string;
}

/** Largest body the echo fetches (bytes). */
const MAX_BYTES = 1024 * 1024 * 1024;

async function main(): Promise<void> {
  const [url, bucket, subject, chunkArg] = process.argv.slice(2);
  if (!url || !bucket || !subject) throw new Error('usage: body-echo.js <nats url> <bucket> <subject>');
  const nc = await connectBus({ servers: url, name: 'bench-body-echo' });
  const blobs = new BlobStore(nc, bucket);
  nc.subscribe(subject, {
    callback: (_err, msg) => {
      void (async (): Promise<EchoReply> => {
        const ref = parseBlobRef(decode<Record<string, unknown>>(msg.data));
        const body = await blobs.take(ref, MAX_BYTES);
        const takenAt = epochMs();
        const putAt = epochMs();
        if (ref.nuid === undefined) return { v: PROTOCOL_VERSION, blob: await blobs.put(body), takenAt, putAt };
        const streamed = await blobs.stream(body);
        streamed.done.catch((err: unknown) => process.stderr.write(`body-echo: streaming back failed: ${(err as Error).message}\n`));
        return { v: PROTOCOL_VERSION, blob: streamed.ref, takenAt, putAt };
      })()
        .catch((err: unknown): EchoReply => ({ v: PROTOCOL_VERSION, error: (err as Error).message }))
        .then((reply) => msg.respond(encode(reply)));
    },
  });
  receiveRaw(nc, `${subject}.raw`, (body) => {
    const takenAt = epochMs();
    nc.publish(`${subject}.raw.times`, encode({ v: PROTOCOL_VERSION, takenAt, putAt: epochMs() } satisfies EchoReply));
    sendRaw(nc, `${subject}.raw.back`, body, { chunkBytes: Number(chunkArg ?? 1024 * 1024 - 16 * 1024) }).catch((err: unknown) =>
      process.stderr.write(`body-echo: sending back raw failed: ${(err as Error).message}\n`),
    );
  });
  await nc.flush();
  process.stdout.write('ready\n');
  const stop = () => void closeBus(nc).finally(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1]?.endsWith('body-echo.js')) {
  main().catch((err: unknown) => {
    process.stderr.write(`body-echo: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
