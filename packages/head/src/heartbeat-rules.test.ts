// Table tests of the heartbeat plausibility rules: each row is a sequence of heartbeats
// (incarnation, seq, arrival time on the head's clock) and whether each one is believed.
import { DEFAULT_HEARTBEAT_RULES, judgeHeartbeat, type HeartbeatTrack } from './heartbeat-rules.js';

const rules = { ...DEFAULT_HEARTBEAT_RULES, switchAfterMs: 2500 };
/** [startedAt, pid, seq, at (ms), state?] */
type Beat = [number, number, number, number, string?];

function run(beats: Beat[]): string[] {
  let track: HeartbeatTrack | undefined;
  return beats.map(([startedAt, pid, seq, at, state]) => {
    const v = judgeHeartbeat(track, { startedAt, pid, seq, state: state ?? 'running' }, at, rules);
    track = v.track;
    return v.accept ? v.kind : `refused: ${v.reason}`;
  });
}

describe('judgeHeartbeat', () => {
  it.each<[string, Beat[], string[]]>([
    [
      'a steady worker',
      [
        [1, 9, 0, 0],
        [1, 9, 1, 1000],
        [1, 9, 2, 2000],
      ],
      ['first', 'next', 'next'],
    ],
    [
      'extra heartbeats for loads within the burst',
      [
        [1, 9, 0, 0],
        [1, 9, 40, 10],
      ],
      ['first', 'next'],
    ],
    [
      'a duplicate (replay) of the last one',
      [
        [1, 9, 5, 0],
        [1, 9, 5, 10],
        [1, 9, 6, 1000],
      ],
      ['first', 'refused: replayed', 'next'],
    ],
    [
      'an older one replayed',
      [
        [1, 9, 5, 0],
        [1, 9, 6, 1000],
        [1, 9, 2, 1100],
        [1, 9, 7, 2000],
      ],
      ['first', 'next', 'refused: replayed', 'next'],
    ],
    [
      'seq 1e15 forged into the real incarnation: refused, the real ones go on',
      [
        [1, 9, 5, 0],
        [1, 9, 1e15, 500],
        [1, 9, 6, 1000],
        [1, 9, 7, 2000],
        [1, 9, 8, 3000],
        [1, 9, 9, 4000],
      ],
      ['first', 'refused: implausible seq', 'next', 'next', 'next', 'next'],
    ],
    [
      'the allowance grows with time: 100 more per second',
      [
        [1, 9, 0, 0],
        [1, 9, 164, 1000],
        [1, 9, 400, 2000],
      ],
      ['first', 'next', 'refused: implausible seq'],
    ],
    [
      'a head that first heard a forgery (seq 1e15) follows the real stream after 3 of its heartbeats',
      [
        [1, 9, 1e15, 0],
        [1, 9, 10, 1000],
        [1, 9, 11, 2000],
        [1, 9, 12, 3000],
        [1, 9, 13, 4000],
      ],
      ['first', 'refused: replayed', 'refused: replayed', 'resync', 'next'],
    ],
    [
      'a forged jump within the allowance hides the real worker for 2 heartbeats only',
      [
        [1, 9, 5, 0],
        [1, 9, 60, 500],
        [1, 9, 6, 1000],
        [1, 9, 7, 2000],
        [1, 9, 8, 3000],
        [1, 9, 9, 4000],
      ],
      ['first', 'next', 'refused: replayed', 'refused: replayed', 'resync', 'next'],
    ],
    [
      'scattered replays never add up to a resync (not a stream of their own)',
      [
        [1, 9, 50, 0],
        [1, 9, 3, 100],
        [1, 9, 51, 1000],
        [1, 9, 2, 1100],
        [1, 9, 52, 2000],
        [1, 9, 1, 2100],
      ],
      ['first', 'refused: replayed', 'next', 'refused: replayed', 'next', 'refused: replayed'],
    ],
    [
      'a forged new incarnation while the real worker keeps sending: ignored',
      [
        [1, 9, 5, 0],
        [9e12, 1, 0, 100],
        [1, 9, 6, 1000],
        [9e12, 1, 1, 1100],
        [1, 9, 7, 2000],
        [1, 9, 8, 3000],
      ],
      ['first', 'refused: another incarnation is live', 'next', 'refused: another incarnation is live', 'next', 'next'],
    ],
    [
      'a one-off forged incarnation that got in while the worker was silent is replaced by the real one',
      [
        [1, 9, 5, 0],
        [9e12, 1, 0, 3000],
        [1, 9, 6, 4000],
        [1, 9, 7, 5000],
        [1, 9, 8, 5600],
      ],
      ['first', 'restart', 'refused: another incarnation is live', 'refused: another incarnation is live', 'restart'],
    ],
    [
      'a graceful restart (stopped) is followed at once',
      [
        [1, 9, 5, 0],
        [1, 9, 6, 100, 'stopped'],
        [2, 10, 0, 200],
      ],
      ['first', 'next', 'restart'],
    ],
    [
      'a crash and restart: the new incarnation after 2.5 s of silence',
      [
        [1, 9, 5, 0],
        [2, 10, 0, 1000],
        [2, 10, 1, 2000],
        [2, 10, 2, 2500],
      ],
      ['first', 'refused: another incarnation is live', 'refused: another incarnation is live', 'restart'],
    ],
  ])('%s', (_what, beats, expected) => {
    expect(run(beats)).toEqual(expected);
  });
});
