// Turns between two load children, with fakes standing in for the children: each "child" holds at
// its pauses through its TurnTaker as a real one holds on SIGUSR2 (pauseLines), and logs its windows.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoPath } from './deps.js';
import { pauseLines, takeTurns, turnTaker, type TurnTaker } from './load-windows.js';

/** A child that warms up for `warmMs`, then pauses before each of its `windows` windows (as load-child does) and logs them. */
function fakeChild(
  name: string,
  windows: number,
  log: string[],
  o: { failAt?: number; warmMs?: number } = {},
): { turns: TurnTaker; done: Promise<number> } {
  const turns = turnTaker();
  const done = (async () => {
    if (o.warmMs) {
      log.push(`${name} warm start`);
      await sleep(o.warmMs);
      log.push(`${name} warm end`);
    }
    for (let i = 0; i < windows; i++) {
      await turns.onPause();
      const failAt = o.failAt;
      if (i === failAt) throw new Error(`${name} failed`);
      log.push(`${name}${i} start`);
      await sleep(5);
      log.push(`${name}${i} end`);
    }
    return windows;
  })();
  return { turns, done };
}

it('the first takes n + 1 windows and the second n, alternately, never two at once', async () => {
  const log: string[] = [];
  const a = fakeChild('a', 3, log);
  const b = fakeChild('b', 2, log);
  await takeTurns(a, b, 2);
  expect(log).toEqual(['a0 start', 'a0 end', 'b0 start', 'b0 end', 'a1 start', 'a1 end', 'b1 start', 'b1 end', 'a2 start', 'a2 end']);
  await expect(Promise.all([a.done, b.done])).resolves.toEqual([3, 2]);
});

it('no window starts while the other child still warms up', async () => {
  const log: string[] = [];
  const a = fakeChild('a', 2, log);
  const b = fakeChild('b', 1, log, { warmMs: 30 });
  await takeTurns(a, b, 1);
  expect(log).toEqual(['b warm start', 'b warm end', 'a0 start', 'a0 end', 'b0 start', 'b0 end', 'a1 start', 'a1 end']);
});

it('a child process waiting at a pause with nothing else to keep it alive waits, and goes on at SIGUSR2', async () => {
  const script = `import { measureTurns } from ${JSON.stringify(repoPath('packages/bench/dist/load-windows.js'))};
const r = await measureTurns({ turns: 2, turnMs: 20 }, async (d) => { await new Promise((r) => setTimeout(r, d)); return { itemsPerSec: d }; });
console.log(JSON.stringify(r.map((x) => x.itemsPerSec)));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const pauses: string[] = [];
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  // Each pause held 300 ms: long enough for an empty event loop to have ended the process.
  pauseLines(child, async (line) => {
    pauses.push(line);
    await sleep(300);
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  expect(code).toBe(0);
  expect(pauses).toEqual(['turn 0', 'turn 1']);
  expect(out.trim().split('\n').pop()).toBe('[20,20]');
}, 30_000);

it('a child that fails ends the turns with its error, and the other finishes its windows unheld', async () => {
  const log: string[] = [];
  const a = fakeChild('a', 3, log);
  const b = fakeChild('b', 2, log, { failAt: 1 });
  await expect(takeTurns(a, b, 2)).rejects.toThrow('b failed');
  await expect(a.done).resolves.toBe(3); // not left waiting at a pause
  expect(log.filter((l) => l.startsWith('a'))).toEqual(['a0 start', 'a0 end', 'a1 start', 'a1 end', 'a2 start', 'a2 end']);
});

it('a child that ends before its last turn ends the turns instead of leaving them waiting', async () => {
  const log: string[] = [];
  const a = fakeChild('a', 3, log);
  const b = fakeChild('b', 1, log); // asked for 2 windows, takes 1
  await expect(takeTurns(a, b, 2)).rejects.toThrow('a load child ended before its turns did');
  await expect(a.done).resolves.toBe(3);
});

it('a pause held by a TurnTaker waits for go; after abandon, pauses do not hold', async () => {
  const t = turnTaker();
  let released = false;
  void t.onPause().then(() => (released = true));
  await sleep(5);
  expect(released).toBe(false);
  await t.go();
  await sleep(0);
  expect(released).toBe(true);
  t.abandon();
  await expect(t.onPause()).resolves.toBeUndefined();
});
