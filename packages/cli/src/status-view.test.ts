// `status` and `status --watch` text: the frames a terminal and a pipe get, the summary line, the
// interval flag, and the watch loop on a real clock (short intervals) stopped by its signal.
import { ErrorCode, UnavailableError, parseDeploySpec, type ClusterStatus } from '@flotilla/protocol';
import {
  CLEAR_SCREEN,
  HIDE_CURSOR,
  SHOW_CURSOR,
  formatAge,
  formatMs,
  headRows,
  parseWatchInterval,
  statusSummary,
  statusText,
  tunedText,
  watchFrame,
} from './status-view.js';
import { watchStatus } from './status-watch.js';

function cluster(queue = 3): ClusterStatus {
  const spec = parseDeploySpec({ name: 'mlp', digest: 'a'.repeat(64), sizeBytes: 3072, replicas: 2 });
  return {
    cluster: 'c1',
    head: { id: 'head-a', pid: 41, startedAt: 0 },
    workers: ['w0', 'w1'].map((id, i) => ({
      id,
      pid: 100 + i,
      alive: i === 0,
      state: 'running' as const,
      lastSeenMs: 10,
      inventory: {} as ClusterStatus['workers'][number]['inventory'],
      devices: [
        {
          id: 'cpu',
          kind: 'cpu' as const,
          capacityBytes: 8 * 1024 ** 3,
          budgetBytes: 4 * 1024 ** 3,
          usedBytes: 512 * 1024 ** 2,
          executionProvider: 'cpu',
          policy: 'fifo',
          models: [{ name: 'mlp', replica: `mlp-${i}`, bytes: 1 }],
        },
      ],
      replicas: [
        {
          id: `mlp-${i}`,
          model: 'mlp',
          digest: 'a'.repeat(64),
          device: 'cpu',
          bytes: 1,
          queueDepth: queue,
          inFlight: 0,
          processed: 40 + i,
          failed: 0,
          pinned: false,
          state: 'ready' as const,
          executionProvider: 'cpu',
          batching: { maxBatchSize: 16, maxQueueDelayMs: 2 },
          batchHistogram: { '1': 3, '16': 2 },
        } as unknown as ClusterStatus['workers'][number]['replicas'][number],
      ],
    })),
    deployments: [{ spec, createdAt: 0, replicas: [], ready: 1 }],
  };
}

const AT = Date.UTC(2026, 10, 29, 14, 5, 9, 250);

describe('status text', () => {
  it('lists workers per device, replicas with queues and batch sizes, and deployments', () => {
    const text = statusText(cluster());
    expect(text).toMatch(/^cluster c1 \(head head-a, pid 41\)$/m);
    expect(text).toMatch(/^w0 +100 +running +cpu +cpu +512 MiB\/4\.0 GiB +8\.0 GiB +mlp$/m);
    expect(text).toMatch(/^w1 +101 +dead /m);
    expect(text).toMatch(/^mlp-1 +mlp +w1 +cpu +ready +3 +41 +0 +- +16\/2 +1:3 16:2$/m);
    expect(text).toMatch(/^mlp +1\/2 +any +3\.0 KiB/m);
  });

  it('says when the head holds placement back after taking the lead, and for which workers', () => {
    const c = cluster();
    const held = { ...c, head: { ...c.head, settlingUntil: AT + 2_100, awaitingWorkers: ['w1', 'w7'] } };
    expect(statusText(held, AT)).toMatch(
      /^cluster c1 \(head head-a, pid 41; placement held 2\.1 s more after taking the lead, awaiting w1, w7\)$/m,
    );
    const plain = { ...c, head: { ...c.head, settlingUntil: AT + 300 } };
    expect(statusText(plain, AT)).toMatch(/^cluster c1 \(head head-a, pid 41; placement held 300 ms more after taking the lead\)$/m);
    expect(statusText(held, AT + 5_000)).toMatch(/^cluster c1 \(head head-a, pid 41\)$/m); // over by then
  });

  it('lists the leader and the standbys with their role, host, time in role and last presence', () => {
    const heads: NonNullable<ClusterStatus['heads']> = [
      { id: 'head-a', pid: 41, host: 'node-1', role: 'leader', since: AT - 125_000, startedAt: 0, lastSeenAt: AT },
      { id: 'head-b', pid: 7, host: 'node-2', role: 'standby', since: AT - 3_700_000, startedAt: 0, lastSeenAt: AT - 850 },
    ];
    const text = statusText({ ...cluster(), heads }, AT);
    expect(text).toMatch(/^HEAD +ROLE +PID +HOST +IN ROLE FOR +LAST SEEN$/m);
    expect(text).toMatch(/^head-a +leader +41 +node-1 +2 min 5 s +0 ms ago$/m);
    expect(text).toMatch(/^head-b +standby +7 +node-2 +1 h 1 min +850 ms ago$/m);
    // Heads come before the workers; a status without `heads` (an older head) has no heads table.
    expect(text.indexOf('head-b')).toBeLessThan(text.indexOf('WORKER'));
    expect(statusText(cluster(), AT)).not.toContain('HEAD ');
    expect(headRows([], AT)).toMatch(/^HEAD/);
  });

  it.each([
    [0, '0 ms'],
    [850, '850 ms'],
    [12_340, '12.3 s'],
    [245_000, '4 min 5 s'],
    [10_920_000, '3 h 2 min'],
    [-5, '0 ms'],
  ])('formatAge(%p) = %p', (ms, text) => expect(formatAge(ms)).toBe(text));

  it('marks a replica whose session runs on a thread of its own', () => {
    const s = cluster();
    Object.assign(s.workers[0]!.replicas[0]!, { sessionHost: 'thread' });
    Object.assign(s.workers[1]!.replicas[0]!, { sessionHost: 'event-loop' });
    const text = statusText(s);
    expect(text).toMatch(/^mlp-0 +mlp +w0 +cpu thread +ready /m);
    expect(text).toMatch(/^mlp-1 +mlp +w1 +cpu +ready /m);
  });

  it('shows a replica’s recent p50/p99 latency from its heartbeat, and - when it answered nothing lately', () => {
    const s = cluster();
    Object.assign(s.workers[0]!.replicas[0]!, { latencyMs: { p50: 1.23456, p99: 123.4, count: 500 } });
    const text = statusText(s);
    expect(text).toMatch(/^REPLICA +MODEL +WORKER +DEVICE +STATE +QUEUE +DONE +FAILED +P50\/P99 MS +BATCH/m);
    expect(text).toMatch(/^mlp-0 +mlp +w0 +cpu +ready +3 +40 +0 +1\.23\/123 +16\/2 /m);
    expect(text).toMatch(/^mlp-1 +mlp +w1 +cpu +ready +3 +41 +0 +- +16\/2 /m);
  });

  it('says in the BATCH column which sizes a replica tuned its batches down to on its traffic', () => {
    const s = cluster();
    Object.assign(s.workers[0]!.replicas[0]!, {
      tunedBatches: [
        { shape: 'x:3x64x64', from: 16, maxBatchSize: 8, state: 'settled' },
        { shape: 'x:3x32x32', from: 32, maxBatchSize: 32, state: 'comparing' },
      ],
    });
    const text = statusText(s);
    expect(text).toMatch(/^mlp-0 +mlp +w0 +cpu +ready +3 +40 +0 +- +16\/2 tuned 8 +1:3 16:2$/m);
    expect(text).toMatch(/^mlp-1 +mlp +w1 +cpu +ready +3 +41 +0 +- +16\/2 +1:3 16:2$/m);
  });

  it.each([
    [undefined, ''],
    [[], ''],
    [[{ from: 16, maxBatchSize: 16 }], ''],
    [
      [
        { from: 16, maxBatchSize: 4 },
        { from: 32, maxBatchSize: 8 },
        { from: 8, maxBatchSize: 4 },
      ],
      ' tuned 4,8',
    ],
  ])('tunedText(%j) = %p', (tuned, text) => expect(tunedText(tuned)).toBe(text));

  it.each([
    [0.4123, '0.412'],
    [7.25, '7.25'],
    [31.24, '31.2'],
    [99.96, '100'],
    [1234.5, '1235'],
  ])('formatMs(%p) = %p', (ms, text) => expect(formatMs(ms)).toBe(text));

  it('sums the cluster up in one line', () => {
    expect(statusSummary(cluster(5))).toBe('1/2 workers alive, 1 deployment (0 fully ready), 2 replicas, 10 queued');
  });
});

describe('status --watch frames', () => {
  it('on a terminal: clears the screen and redraws with the time and interval on top', () => {
    const frame = watchFrame({ status: cluster() }, { tty: true, at: AT, intervalMs: 500 });
    expect(frame.startsWith(CLEAR_SCREEN)).toBe(true);
    const lines = frame.slice(CLEAR_SCREEN.length).split('\n');
    expect(lines[0]).toBe('every 500 ms, updated 14:05:09 UTC (Ctrl-C to stop)');
    expect(lines[2]).toBe(statusSummary(cluster()));
    expect(frame).toContain(statusText(cluster()).trimEnd());
  });

  it('on a terminal: cuts lines to its width and the frame to its height, so a redraw never scrolls', () => {
    const full = watchFrame({ status: cluster() }, { tty: true, at: AT, intervalMs: 500 });
    const frame = watchFrame({ status: cluster() }, { tty: true, at: AT, intervalMs: 500, columns: 40, rows: 8 });
    const lines = frame.slice(CLEAR_SCREEN.length).replace(/\n$/, '').split('\n');
    expect(lines).toHaveLength(7);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(40);
    const hidden = full.slice(CLEAR_SCREEN.length).replace(/\n$/, '').split('\n').length - 6;
    expect(lines[6]).toMatch(new RegExp(`^… ${hidden} more lines`));
  });

  it('in a pipe: a timestamp line, then the snapshot, never escape codes', () => {
    const frame = watchFrame({ status: cluster() }, { tty: false, at: AT, intervalMs: 500, columns: 10, rows: 3 });
    expect(frame.split('\n')[0]).toBe('--- 2026-11-29T14:05:09.250Z ---');
    expect(frame).toContain(statusText(cluster()));
    expect(frame).not.toContain('\x1b');
  });

  it('shows a failed refresh as its error code', () => {
    const frame = watchFrame({ error: { code: 'UNAVAILABLE', message: 'no head answered' } }, { tty: false, at: AT, intervalMs: 500 });
    expect(frame).toBe('--- 2026-11-29T14:05:09.250Z ---\nerror UNAVAILABLE: no head answered\n\n');
  });

  it.each([
    [undefined, 1000],
    ['250', 250],
    ['100', 100],
  ])('--interval %p is %p ms', (text, ms) => expect(parseWatchInterval(text)).toBe(ms));

  it.each(['99', '0', '-5', '1.5', 'soon', ''])('--interval %p is BAD_REQUEST', (text) => {
    expect(() => parseWatchInterval(text)).toThrow(expect.objectContaining({ code: ErrorCode.BAD_REQUEST }));
  });
});

describe('the watch loop', () => {
  it('writes a frame per interval, keeps going through a failed refresh, and stops when aborted', async () => {
    const written: string[] = [];
    const ac = new AbortController();
    let calls = 0;
    const started = Date.now();
    const frames = await watchStatus({
      intervalMs: 100,
      tty: false,
      status: async () => {
        calls++;
        if (calls === 2) throw new UnavailableError('head failing over');
        if (calls === 4) ac.abort();
        return cluster(calls);
      },
      write: (t) => void written.push(t),
      signal: ac.signal,
    });
    const took = Date.now() - started;
    expect(frames).toBe(3);
    expect(written).toHaveLength(3);
    expect(written[0]).toContain('2 queued'); // 2 replicas × queue 1
    expect(written[1]).toContain('error UNAVAILABLE: head failing over');
    expect(written[2]).toContain('6 queued');
    // Three waits of 100 ms between four refreshes.
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(2000);
  });

  it('on a terminal hides the cursor while watching and shows it again, even when aborted mid-refresh', async () => {
    const written: string[] = [];
    const ac = new AbortController();
    const frames = await watchStatus({
      intervalMs: 100,
      tty: true,
      status: () => {
        setTimeout(() => ac.abort(), 20);
        return new Promise(() => undefined); // a refresh that never answers
      },
      write: (t) => void written.push(t),
      signal: ac.signal,
      size: () => ({ columns: 80, rows: 24 }),
    });
    expect(frames).toBe(0);
    expect(written).toEqual([HIDE_CURSOR, SHOW_CURSOR]);
  });

  it('with --json writes one JSON line per snapshot', async () => {
    const written: string[] = [];
    const ac = new AbortController();
    await watchStatus({
      intervalMs: 100,
      tty: true,
      json: true,
      status: async () => {
        if (written.length === 1) ac.abort();
        return cluster();
      },
      write: (t) => void written.push(t),
      signal: ac.signal,
      now: () => AT,
    });
    expect(written).toHaveLength(1);
    expect(written[0]!.endsWith('\n')).toBe(true);
    const line = JSON.parse(written[0]!);
    expect(line.at).toBe('2026-11-29T14:05:09.250Z');
    expect(line.status.cluster).toBe('c1');
  });
});
