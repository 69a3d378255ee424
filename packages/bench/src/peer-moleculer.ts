// Child process of `pnpm bench`, pinned where Flotilla's worker runs: the Moleculer peer, a plain
// Moleculer 0.14 service over the bench's own nats-server (NATS transporter, MsgPack serializer)
// whose one action runs onnxruntime-node with the replica's session options (1 intra-op thread):
// one `session.run` per call, no batching, no queue. What a user might write instead of Flotilla.
// peer-moleculer-load.ts calls it. Prints 'ready' on stdout once the service is advertised.
//   node packages/bench/dist/peer-moleculer.js '{"natsUrl":"nats://…","namespace":"…","modelPath":"…"}'
import { ServiceBroker, type Context } from 'moleculer';
import * as ort from 'onnxruntime-node';
import {
  MOLECULER_SERVICE,
  moleculerBrokerOptions,
  type MoleculerInferParams,
  type MoleculerInferReply,
  type MoleculerTensor,
} from './peer-moleculer-wire.js';

// The same session options as the worker's replica with --threads 1 and the in-process baselines.
const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
};

/** A float32 view of a msgpack bin; copied when the bin does not start on a 4-byte boundary. */
function float32Of(b: Buffer): Float32Array {
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return new Float32Array(new Uint8Array(b).buffer);
}

async function main(): Promise<void> {
  const { natsUrl, namespace, modelPath } = JSON.parse(process.argv[2] ?? '{}') as {
    natsUrl: string;
    namespace: string;
    modelPath: string;
  };
  const session = await ort.InferenceSession.create(modelPath, SESSION_OPTIONS);
  const broker = new ServiceBroker(moleculerBrokerOptions(natsUrl, namespace, `bench-moleculer-service-${process.pid}`));
  broker.createService({
    name: MOLECULER_SERVICE,
    actions: {
      async infer(ctx: Context<MoleculerInferParams>): Promise<MoleculerInferReply> {
        const feeds: Record<string, ort.Tensor> = {};
        for (const [name, t] of Object.entries(ctx.params.inputs)) feeds[name] = new ort.Tensor('float32', float32Of(t.data), t.dims);
        const results = await session.run(feeds);
        const outputs: Record<string, MoleculerTensor> = {};
        for (const [name, t] of Object.entries(results)) {
          const data = t.data as Float32Array;
          outputs[name] = { dims: [...t.dims], data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
        }
        return { outputs };
      },
    },
  });
  await broker.start();
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await broker.stop();
  await session.release();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`peer-moleculer: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
