// Integration (real local cluster and gateway): a transformer encoder's KServe v2 metadata comes
// from its deployment signature, dynamic [batch, seq] dims reported as -1 (no probe inferences),
// and a v2 JSON inference with INT64 inputs of any sequence length answers its logits.
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { startGateway, type Gateway } from './gateway.js';

let cluster: LocalCluster;
let gateway: Gateway;
let base: string;

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1 });
  const client = cluster.client();
  await client.deploy(sampleModelPath('tiny-encoder'), 'enc', { device: 'cpu', profile: { buckets: { seq: [16, 64] } } });
  gateway = await startGateway({ client, port: 0, host: '127.0.0.1', probeSignatures: false });
  base = `http://127.0.0.1:${gateway.port}`;
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await cluster?.stop();
});

describe('KServe v2 metadata of a transformer encoder', () => {
  it('reports input_ids and attention_mask as INT64 [-1, -1] and logits as FP32 [-1, 2]', async () => {
    const res = await fetch(`${base}/v2/models/enc`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      name: 'enc',
      inputs: [
        { name: 'input_ids', datatype: 'INT64', shape: [-1, -1] },
        { name: 'attention_mask', datatype: 'INT64', shape: [-1, -1] },
      ],
      outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 2] }],
      parameters: { signature_known: true },
    });
  });

  it.each([5, 20])('infers at seq %i over JSON', async (seq) => {
    const res = await fetch(`${base}/v2/models/enc/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [
          { name: 'input_ids', shape: [2, seq], datatype: 'INT64', data: Array.from({ length: 2 * seq }, (_, i) => (i * 11) % 256) },
          { name: 'attention_mask', shape: [2, seq], datatype: 'INT64', data: Array.from({ length: 2 * seq }, () => 1) },
        ],
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { outputs: Array<{ name: string; shape: number[]; data: number[] }> };
    expect(body.outputs[0]).toMatchObject({ name: 'logits', shape: [2, 2] });
    expect(body.outputs[0]!.data.every((v) => Number.isFinite(v))).toBe(true);
  });
});
