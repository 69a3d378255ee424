// Child process of `pnpm bench`: the empty responder of the raw NATS request/reply baseline. It
// answers every request on SUBJECT at once with REPLY_BYTES zero bytes, pinned where the replica
// runs, so the figure is what the broker and the client library cost without any model.
//   node packages/bench/dist/responder.js NATS_URL SUBJECT REPLY_BYTES
import { connectBus } from '@flotilla/bus';

async function main(): Promise<void> {
  const [url, subject, replyBytes] = process.argv.slice(2);
  if (!url || !subject) throw new Error('usage: responder.js NATS_URL SUBJECT REPLY_BYTES');
  const reply = new Uint8Array(Number(replyBytes ?? 64));
  const nc = await connectBus({ servers: url, name: 'bench-responder' });
  let answered = 0;
  nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return;
      msg.respond(reply);
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
