// `flotilla describe` text: symbolic dims by name, unnamed dynamic dims as -1, and what it says
// before any replica has reported the signature.
import { parseDeploySpec, type DeploymentStatus } from '@flotilla/protocol';
import { describeText, dimText } from './describe-command.js';

const status = (over: Partial<DeploymentStatus> = {}): DeploymentStatus => ({
  spec: parseDeploySpec({ name: 'enc', digest: 'a'.repeat(64), sizeBytes: 4096 }),
  createdAt: 0,
  replicas: [{ id: 'enc-1', workerId: 'w0', device: 'cpu', state: 'ready', queueDepth: 2 }],
  ready: 1,
  ...over,
});

describe('describe text', () => {
  it.each<[number | string | null, string]>([
    [3, '3'],
    [0, '0'],
    ['seq', 'seq'],
    [null, '-1'],
  ])('dim %p prints as %s', (d, text) => expect(dimText(d)).toBe(text));

  it('prints the signature as a table, one row per input and output', () => {
    const text = describeText(
      status({
        signature: {
          inputs: [
            { name: 'input_ids', dtype: 'int64', shape: ['batch', 'seq'] },
            { name: 'image', dtype: 'float32', shape: ['batch', 3, null, null] },
          ],
          outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', 'seq', 8] }],
          batchAxis: true,
        },
      }),
    );
    expect(text).toMatch(/^model {4}enc$/m);
    expect(text).toMatch(/^replicas 1\/1 ready$/m);
    expect(text).toMatch(/^enc-1 +w0 +cpu +ready +2$/m);
    expect(text).toMatch(/^ +NAME +DTYPE +DIMS$/m);
    expect(text).toMatch(/^input +input_ids +int64 +\[batch, seq\]$/m);
    expect(text).toMatch(/^input +image +float32 +\[batch, 3, -1, -1\]$/m);
    expect(text).toMatch(/^output +y +float32 +\[batch, seq, 8\]$/m);
    expect(text).toContain('batch axis: dim 0');
  });

  it('says so when no replica has reported the signature yet', () => {
    expect(describeText(status({ replicas: [], ready: 0 }))).toMatch(/no replicas\n\nsignature: not known yet/);
  });
});
