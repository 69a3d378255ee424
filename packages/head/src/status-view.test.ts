// The deployment status the head answers: the model signature comes from a loaded replica of the
// deployed file only (not a loading one, not one of an older digest).
import { parseDeploySpec, type ModelSignature, type ReplicaState } from '@flotilla/protocol';
import { deploymentStatus, type DeploymentFacts } from './status-view.js';
import { replicaState } from './testing/replica-state.js';

const DIGEST = 'a'.repeat(64);
const OLD = 'b'.repeat(64);
const sig = (dim: string): ModelSignature => ({
  inputs: [{ name: 'input_ids', dtype: 'int64', shape: ['batch', dim] }],
  outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', dim, 8] }],
  batchAxis: true,
});
const facts: DeploymentFacts = {
  spec: parseDeploySpec({ name: 'enc', digest: DIGEST, sizeBytes: 1024 }),
  createdAt: 0,
  pending: new Map(),
  dormant: false,
};
const loading = {
  id: 'l',
  model: 'enc',
  digest: DIGEST,
  device: 'cpu',
  state: 'loading',
  bytes: 0,
  queueDepth: 0,
  inFlight: 0,
} as ReplicaState;
const at = (...rs: ReplicaState[]) => rs.map((r, order) => ({ r, workerId: 'w0', order }));

describe('deploymentStatus signature', () => {
  it.each<[string, ReplicaState[], ModelSignature | undefined]>([
    ['no replica yet', [], undefined],
    ['only a loading replica', [loading], undefined],
    ['a loaded replica from an older worker (no signature)', [replicaState('r1', 'enc', { digest: DIGEST })], undefined],
    ['only a replica of an older digest', [replicaState('r1', 'enc', { digest: OLD, signature: sig('old') })], undefined],
    [
      'an older digest first, then the current one',
      [
        replicaState('r1', 'enc', { digest: OLD, signature: sig('old') }),
        loading,
        replicaState('r2', 'enc', { digest: DIGEST, signature: sig('seq') }),
      ],
      sig('seq'),
    ],
    [
      'a draining replica of the current digest',
      [replicaState('r1', 'enc', { digest: DIGEST, state: 'draining', signature: sig('seq') })],
      sig('seq'),
    ],
  ])('%s', (_case, replicas, expected) => {
    const s = deploymentStatus(facts, at(...replicas));
    expect(s.signature).toEqual(expected);
    expect('signature' in s).toBe(expected !== undefined);
  });
});
