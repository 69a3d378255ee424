import { parseDeploySpec } from '@flotilla/protocol';
import { Autoscaler } from './autoscaler.js';
import {
  activeRefusals,
  autoscalerFor,
  newDeployment,
  placementHold,
  recordFailure,
  resetRetry,
  transition,
  type Deployment,
  type DeploymentEvent,
} from './deployment.js';

const spec = parseDeploySpec({ name: 'mlp', digest: 'a'.repeat(64), sizeBytes: 10 });
const noRoom = { code: 'NO_CAPACITY', message: 'no room' };

describe('deployment retry transitions', () => {
  it('a round of 32 refusals is one failure; the next rounds double the wait up to 60 s', () => {
    const d = newDeployment(spec, 0, 0, 0);
    const logged = Array.from({ length: 32 }, (_, i) => recordFailure(d, noRoom, 1000, 0, `w/${i}`));
    expect(logged.filter(Boolean)).toHaveLength(1); // reported once
    expect(d).toMatchObject({ failures: 1, retryAt: 1250, pendingReason: noRoom });
    expect(activeRefusals(d, 1000).size).toBe(32);
    const waits: number[] = [];
    for (let k = 2; k <= 12; k++) {
      const at = d.retryAt;
      recordFailure(d, noRoom, at, 0);
      waits.push(d.retryAt - at);
    }
    expect(d.failures).toBe(12);
    expect(waits).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]);
    expect(activeRefusals(d, 6001).size).toBe(0); // the round's refusals lasted 5 s
  });

  it('another failure code is reported once too; a change resets everything', () => {
    const d = newDeployment(spec, 0, 0, 0);
    expect(recordFailure(d, noRoom, 0, 0, 'w/cpu')).toBe(true);
    expect(recordFailure(d, { code: 'UNAVAILABLE', message: 'never reported' }, 300, 0, 'fake/cpu')).toBe(true);
    expect(recordFailure(d, noRoom, 900, 0)).toBe(false);
    resetRetry(d, 7);
    expect(d).toMatchObject({ failures: 0, retryAt: 0, epoch: 7 });
    expect(activeRefusals(d, 0).size).toBe(0);
    expect(recordFailure(d, noRoom, 1000, 7)).toBe(true);
  });
});

describe('deployment transitions', () => {
  const T = 10_000;
  const unavailable = { code: 'UNAVAILABLE', message: 'store mid-election' };
  const loadFailed = { code: 'MODEL_LOAD_FAILED', message: 'bad model' };
  const fresh = (change: (d: Deployment) => void = () => undefined) => {
    const d = newDeployment(spec, 0, 0, 0);
    d.pending.set('mlp-1', { workerId: 'w0', device: 'cpu', bytes: 7, sentAt: 5 });
    change(d);
    return d;
  };
  /** The fields a transition may change, comparable with toEqual. */
  const facts = (d: Deployment) => ({
    pending: Object.fromEntries(d.pending),
    pendingReason: d.pendingReason,
    failures: d.failures,
    retryAt: d.retryAt,
    epoch: d.epoch,
    dormant: d.dormant,
    replicas: d.spec.replicas,
    measuredBytes: d.measuredBytes,
    answered: d.answered,
    refused: Object.fromEntries(d.refused ?? []),
  });
  const same = facts(fresh());
  const pendingOne = same.pending;
  const backedOff = (d: Deployment) => Object.assign(d, { failures: 3, retryAt: T + 500, epoch: 1, pendingReason: noRoom });

  it.each<[string, (d: Deployment) => void, DeploymentEvent, boolean, Partial<ReturnType<typeof facts>>]>([
    [
      'load-sent: pending from now',
      () => undefined,
      { type: 'load-sent', replicaId: 'mlp-2', workerId: 'w1', device: 'gpu:0', bytes: 9 },
      false,
      { pending: { ...pendingOne, 'mlp-2': { workerId: 'w1', device: 'gpu:0', bytes: 9, sentAt: T } } },
    ],
    [
      'load-answered: replied, a transient reason cleared',
      (d) => (d.pendingReason = unavailable),
      { type: 'load-answered', replicaId: 'mlp-1' },
      false,
      { pending: { 'mlp-1': { ...pendingOne['mlp-1']!, repliedAt: T } }, pendingReason: undefined },
    ],
    [
      'load-answered: NO_CAPACITY stays (other replicas may not fit)',
      (d) => (d.pendingReason = noRoom),
      { type: 'load-answered', replicaId: 'mlp-1' },
      false,
      { pending: { 'mlp-1': { ...pendingOne['mlp-1']!, repliedAt: T } }, pendingReason: noRoom },
    ],
    [
      'load-failed NO_CAPACITY: settled, backs off, device skipped',
      () => undefined,
      { type: 'load-failed', replicaId: 'mlp-1', workerId: 'w0', device: 'cpu', error: noRoom, epoch: 4 },
      true,
      {
        pending: {},
        failures: 1,
        retryAt: T + 250,
        epoch: 4,
        pendingReason: noRoom,
        refused: { 'w0/cpu': { until: T + 5000, error: noRoom } },
      },
    ],
    [
      'load-failed otherwise: backs off, no device skipped',
      () => undefined,
      { type: 'load-failed', replicaId: 'mlp-1', workerId: 'w0', device: 'cpu', error: unavailable, epoch: 0 },
      true,
      { pending: {}, failures: 1, retryAt: T + 250, pendingReason: unavailable, refused: {} },
    ],
    [
      'load-failed, code already reported: not reported again',
      (d) => d.reported.add('UNAVAILABLE'),
      { type: 'load-failed', replicaId: 'mlp-1', workerId: 'w0', device: 'cpu', error: unavailable, epoch: 0 },
      false,
      { pending: {}, failures: 1, retryAt: T + 250, pendingReason: unavailable },
    ],
    ['confirmed: counted from the heartbeats on', () => undefined, { type: 'confirmed', replicaId: 'mlp-1' }, false, { pending: {} }],
    [
      'gone before any heartbeat: settled, no failure',
      () => undefined,
      { type: 'gone', replicaId: 'mlp-1' },
      false,
      { pending: {}, failures: 0 },
    ],
    [
      'unconfirmed: a failed placement, its device skipped',
      (d) => (d.pending.get('mlp-1')!.repliedAt = 6),
      { type: 'unconfirmed', replicaId: 'mlp-1', confirmMs: 5000, epoch: 0 },
      true,
      {
        pending: {},
        failures: 1,
        retryAt: T + 250,
        pendingReason: {
          code: 'UNAVAILABLE',
          message: 'worker w0 answered the load of mlp-1 but has not reported it in its heartbeats for 5000 ms',
        },
        refused: {
          'w0/cpu': {
            until: T + 5000,
            error: {
              code: 'UNAVAILABLE',
              message: 'worker w0 answered the load of mlp-1 but has not reported it in its heartbeats for 5000 ms',
            },
          },
        },
      },
    ],
    [
      'unconfirmed, no longer pending: nothing',
      () => undefined,
      { type: 'unconfirmed', replicaId: 'mlp-9', confirmMs: 5000, epoch: 0 },
      false,
      {},
    ],
    [
      'unplaced: backs off',
      () => undefined,
      { type: 'unplaced', error: noRoom, epoch: 2 },
      true,
      { failures: 1, retryAt: T + 250, epoch: 2, pendingReason: noRoom },
    ],
    [
      'unplaced within the back-off window: the same round',
      backedOff,
      { type: 'unplaced', error: noRoom, epoch: 1 },
      true,
      { failures: 3, retryAt: T + 500 },
    ],
    ['satisfied: NO_CAPACITY cleared', (d) => (d.pendingReason = noRoom), { type: 'satisfied' }, false, { pendingReason: undefined }],
    [
      'satisfied: a fatal load error stays',
      (d) => (d.pendingReason = loadFailed),
      { type: 'satisfied' },
      false,
      { pendingReason: loadFailed },
    ],
    [
      'capacity freed since the failure: retry now',
      backedOff,
      { type: 'capacity', epoch: 2 },
      false,
      { failures: 0, retryAt: 0, epoch: 2, pendingReason: noRoom },
    ],
    [
      'capacity unchanged: still backing off',
      backedOff,
      { type: 'capacity', epoch: 1 },
      false,
      { failures: 3, retryAt: T + 500, epoch: 1 },
    ],
    [
      'capacity, no failure: settle period kept',
      (d) => (d.retryAt = T + 2500),
      { type: 'capacity', epoch: 7 },
      false,
      { retryAt: T + 2500, epoch: 0 },
    ],
    ['evicted: dormant, reported', () => undefined, { type: 'evicted' }, true, { dormant: true }],
    ['evicted again: not reported again', (d) => (d.dormant = true), { type: 'evicted' }, false, { dormant: true }],
    [
      'requested while dormant: awake, retry now',
      (d) => (backedOff(d), (d.dormant = true)),
      { type: 'requested', counted: 1, epoch: 1 },
      false,
      { dormant: false, failures: 0, retryAt: 0 },
    ],
    ['requested with no replica: retry now', backedOff, { type: 'requested', counted: 0, epoch: 1 }, false, { failures: 0, retryAt: 0 }],
    [
      'requested with replicas: the back-off stands',
      backedOff,
      { type: 'requested', counted: 1, epoch: 1 },
      false,
      { failures: 3, retryAt: T + 500 },
    ],
    [
      'requested when scaled to zero: one replica',
      (d) => (d.spec = { ...d.spec, replicas: 0 }),
      { type: 'requested', counted: 0, epoch: 0 },
      false,
      { replicas: 1 },
    ],
    [
      'scaled: new spec, awake, retry now',
      (d) => (backedOff(d), (d.dormant = true)),
      { type: 'scaled', spec: { ...spec, replicas: 5 }, epoch: 3 },
      false,
      { replicas: 5, dormant: false, failures: 0, retryAt: 0, epoch: 3 },
    ],
    [
      'scaled while settling after a takeover: the hold stays',
      (d) => (d.retryAt = T + 2500),
      { type: 'scaled', spec: { ...spec, replicas: 3 }, epoch: 2 },
      false,
      { replicas: 3, retryAt: T + 2500, epoch: 2 },
    ],
    ['autoscaled', () => undefined, { type: 'autoscaled', replicas: 4 }, false, { replicas: 4 }],
    ['measured: the largest footprint seen', (d) => (d.measuredBytes = 50), { type: 'measured', bytes: 80 }, false, { measuredBytes: 80 }],
    ['measured smaller: kept', (d) => (d.measuredBytes = 50), { type: 'measured', bytes: 20 }, false, { measuredBytes: 50 }],
    ['sampled', () => undefined, { type: 'sampled', total: 42 }, false, { answered: { at: T, total: 42 } }],
  ])('%s', (_name, setup, event, reported, changed) => {
    const d = fresh(setup);
    const before = facts(d);
    expect(transition(d, event, T)).toBe(reported);
    expect(facts(d)).toEqual({ ...before, ...changed });
  });

  it.each<[string, Partial<Deployment>, ReturnType<typeof placementHold>]>([
    ['free to place', {}, undefined],
    ['dormant', { dormant: true }, 'dormant'],
    ['settling after a takeover', { retryAt: T + 1 }, 'settling'],
    ['backing off', { failures: 1, retryAt: T + 1 }, 'backing-off'],
    ['back-off over', { failures: 1, retryAt: T }, undefined],
  ])('placementHold: %s', (_name, over, hold) => {
    expect(placementHold(Object.assign(fresh(), over), T)).toBe(hold);
  });

  it('refusals that expired are dropped when the next one is recorded', () => {
    const d = fresh();
    recordFailure(d, noRoom, 0, 0, 'w0/cpu'); // skipped until 5000
    recordFailure(d, noRoom, 6000, 0, 'w1/cpu');
    expect([...d.refused!.keys()]).toEqual(['w1/cpu']);
  });

  it('an autoscaler only for an open replica range', () => {
    expect(autoscalerFor(spec)).toBeUndefined();
    expect(autoscalerFor({ ...spec, minReplicas: 1, maxReplicas: 3 })).toBeInstanceOf(Autoscaler);
    expect(autoscalerFor({ ...spec, replicas: 2, minReplicas: 2, maxReplicas: 2 })).toBeUndefined();
  });
});
