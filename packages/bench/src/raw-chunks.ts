// The floor under `bench:bodies`: a body moved over core NATS with nothing else — no JetStream, no
// hashing, no encoding. The sender publishes the body in chunks as requests (on `<subject>.<offset>.<total
// size>`) and keeps `window` of them unanswered; the receiver copies each into one buffer of
// the announced size and answers it, which is the flow control. That is the cheapest transfer a
// direct path between two NATS clients could be (each chunk is one request and one response, so
// it needs no more than the `allow_responses` permission a worker has), and what the staged path
// through the blob bucket is compared with in the same run.
import type { NatsConnection } from '@flotilla/bus';

type Subscription = ReturnType<NatsConnection['subscribe']>;
type Msg = Awaited<ReturnType<NatsConnection['request']>>;

export interface RawSendOptions {
  /** Bytes per chunk (at most the server's max_payload less the headers). */
  chunkBytes: number;
  /** Unanswered chunks at a time. Default 8 (the blob store's put window). */
  window?: number;
  /** Per-chunk answer timeout (ms). Default 10 s. */
  timeoutMs?: number;
}

/** Sends `data` to `subject` in chunks as requests, at most `window` unanswered; resolves when all are answered. */
export async function sendRaw(nc: NatsConnection, subject: string, data: Uint8Array, opts: RawSendOptions): Promise<void> {
  const window = Math.max(1, opts.window ?? 8);
  const timeout = opts.timeoutMs ?? 10_000;
  const inFlight: Promise<Msg>[] = [];
  // An empty body is one empty chunk: the receiver still learns its size.
  for (let off = 0; off < data.byteLength || off === 0; off += opts.chunkBytes) {
    const chunk = data.subarray(off, Math.min(off + opts.chunkBytes, data.byteLength));
    inFlight.push(nc.request(`${subject}.${off}.${data.byteLength}`, chunk, { timeout }));
    if (inFlight.length >= window && (await inFlight.shift()!).data.byteLength > 0)
      throw new Error(`a raw chunk to ${subject} was refused`);
    if (data.byteLength === 0) break;
  }
  const answers = await Promise.all(inFlight);
  if (answers.some((m) => m.data.byteLength > 0)) throw new Error(`a raw chunk to ${subject} was refused`);
}

/**
 * Receives bodies sent by sendRaw on `subject`, one at a time: calls `onBody` with each once all its
 * bytes are in. A chunk that does not fit the body being received is answered with one byte (refused)
 * and dropped (this is a bench tool between two processes of one run, not a public endpoint).
 */
export function receiveRaw(nc: NatsConnection, subject: string, onBody: (body: Uint8Array) => void): Subscription {
  let body: Uint8Array | undefined;
  let got = 0;
  return nc.subscribe(`${subject}.*.*`, {
    callback: (_err: Error | null, msg: Msg) => {
      const [off, size] = msg.subject.split('.').slice(-2).map(Number) as [number, number];
      if (off === 0) {
        body = new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
        got = 0;
      }
      if (!body || body.byteLength !== size || off + msg.data.byteLength > size) {
        msg.respond(Uint8Array.of(1)); // a non-empty answer: refused
        return;
      }
      body.set(msg.data, off);
      got += msg.data.byteLength;
      msg.respond(new Uint8Array(0));
      if (got === size) {
        const done = body;
        body = undefined;
        onBody(done);
      }
    },
  });
}
