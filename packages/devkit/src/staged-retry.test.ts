// A staged request is taken (deleted) by the replica that receives its reference: when that
// replica answers a retryable error, the SDK's next attempt must stage the body again, or it
// sends a reference to nothing (UNAVAILABLE, retried until the deadline).
import { BlobStore, closeBus, connectBus, stagedRef, takeStaged, type NatsConnection } from '@flotilla/bus';
import { FlotillaClient } from '@flotilla/client';
import { ErrorCode, PROTOCOL_VERSION, decode, encode, fromTypedArray, subjects, toFlotillaError } from '@flotilla/protocol';
import { NatsServer } from '@flotilla/local';

describe('staged requests and retries', () => {
  let nats: NatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    nats = await NatsServer.start({ maxPayload: 64 * 1024 });
    nc = await connectBus({ servers: nats.url, name: 'fake-replica' });
  });

  afterAll(async () => {
    await closeBus(nc);
    await nats.stop();
  });

  it('stages the body again for an attempt after a replica took it and answered OVERLOADED', async () => {
    const cluster = 'stagedretry';
    const s = subjects(cluster);
    const blobs = new BlobStore(nc, s.blobBucket);
    const takes: string[] = [];
    // A fake replica: takes the staged body, answers OVERLOADED the first time and the input's size the second.
    nc.subscribe(s.infer('big'), {
      callback: (_err, msg) => {
        void (async () => {
          const ref = stagedRef(decode(msg.data));
          try {
            const req = await takeStaged(blobs, ref!, 16 * 1024 * 1024);
            takes.push(ref!.name);
            const x = (req.inputs as Record<string, { data: Uint8Array }>).x!;
            if (takes.length === 1) {
              msg.respond(encode({ v: PROTOCOL_VERSION, ok: false, error: { code: ErrorCode.OVERLOADED, message: 'busy' } }));
              return;
            }
            const y = fromTypedArray('float32', [1], Float32Array.of(x.data.byteLength));
            msg.respond(
              encode({
                v: PROTOCOL_VERSION,
                ok: true,
                outputs: { y },
                meta: { worker: 'w', replica: 'r', device: 'cpu', batch: 1, queueMs: 0, runMs: 0, queueDepth: 0 },
              }),
            );
          } catch (err) {
            takes.push(`failed: ${toFlotillaError(err).code}`);
            msg.respond(encode({ v: PROTOCOL_VERSION, ok: false, error: toFlotillaError(err).toWire() }));
          }
        })();
      },
    });
    await nc.flush();
    const client = new FlotillaClient({ servers: nats.url, cluster });
    try {
      const x = { dtype: 'float32' as const, dims: [1, 64 * 1024], data: new Float32Array(64 * 1024).fill(1) };
      const r = await client.inferWithMeta('big', { x }, { timeoutMs: 10_000, retries: 2 });
      expect(Array.from(r.outputs.y!.data as Float32Array)).toEqual([256 * 1024]);
      expect(r.attempts).toBe(2);
      // Two different staged objects, each taken once: the retry did not send the taken reference again.
      expect(takes).toHaveLength(2);
      expect(takes.every((t) => !t.startsWith('failed'))).toBe(true);
      expect(new Set(takes).size).toBe(2);
    } finally {
      await client.close();
    }
  });
});
