// Child process of `pnpm bench`: the empty responder of the raw NATS request/reply baseline. It
// answers every request on SUBJECT at once with REPLY_BYTES zero bytes, pinned where the replica
// runs, so the figure is what the broker and the client library cost without any model. With
// `infer-reply` instead of a size it answers a canned successful InferReply (a [1,10] float32
// output) and echoes the trace header as a replica does: a replica with no model, for measuring
// the SDK's own cost (bench:overhead).
//   node packages/bench/dist/responder.js NATS_URL SUBJECT REPLY_BYTES|infer-reply
import { connectBus } from '@flotilla/bus';
import { PROTOCOL_VERSION, TRACEPARENT_HEADER, encode, fromTypedArray } from '@flotilla/protocol';

async function main(): Promise<void> {
  const [url, subject, replyBytes] = process.argv.slice(2);
  if (!url || !subject) throw new Error('usage: responder.js NATS_URL SUBJECT REPLY_BYTES');
  const canned = replyBytes === 'infer-reply';
  const reply = canned
    ? encode({
        v: PROTOCOL_VERSION,
        ok: true,
        outputs: { y: fromTypedArray('float32', [1, 10], new Float32Array(10).fill(0.5)) },
        meta: { worker: 'bench', replica: 'bench-fake', device: 'cpu', batch: 1, queueMs: 0, runMs: 0, queueDepth: 0 },
      })
    : new Uint8Array(Number(replyBytes ?? 64));
  const nc = await connectBus({ servers: url, name: 'bench-responder' });
  let answered = 0;
  nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return;
      // The request's headers carry only the trace context: echoed as they are.
      if (canned && msg.headers?.get(TRACEPARENT_HEADER)) msg.respond(reply, { headers: msg.headers });
      else msg.respond(reply);
      answered++;
    },
  });
  await nc.flush();
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await nc.drain();
  process.stderr.write(`responder: answered ${answered}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`responder: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
