// The bench's load generator child on a real nats-server (raw kind: bare requests to an echo
// responder): with `windows`, it measures that many windows, stops its callers between them (every
// request answered, none sent) and waits for SIGUSR2, which is what lets the bench time the model
// in-process on the replica's idle core between two windows (paired.ts); with `windowWarmMs`, each
// window's callers start that long before it and only what is answered within it counts.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { closeBus, connectBus } from '@flotilla/bus';
import { NatsServer, freePort } from '@flotilla/local';
import { repoPath } from './deps.js';
import { exitJson } from './peer-process.js';
import type { LoadChildArgs, LoadChildResult } from './load-child.js';

interface Outcome {
  result: LoadChildResult;
  /** The pause lines, in order (`warm <n>` as `warm`). */
  pauses: string[];
  /** Requests that reached the responder during each pause (200 ms). */
  quiet: number[];
  /** Requests that reached the responder in all. */
  received: number;
}

/** Runs the child against an echo responder on a fresh nats-server, letting it go 200 ms after each pause. */
async function runChild(extra: Partial<LoadChildArgs>): Promise<Outcome> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-load-child-'));
  const server = await NatsServer.start({ port: await freePort(), dir });
  const nc = await connectBus({ name: 'echo', servers: server.url });
  try {
    let received = 0;
    const sub = nc.subscribe('bench.echo');
    void (async () => {
      for await (const m of sub) {
        received++;
        m.respond(m.data);
      }
    })();
    await nc.flush();
    const args = {
      kind: 'raw',
      natsUrl: server.url,
      subject: 'bench.echo',
      bodyBase64: Buffer.from('hello').toString('base64'),
      concurrency: 8,
      durationMs: 150,
      warmupMs: 50,
      waitForGo: true,
      windows: 3,
      ...extra,
    } as LoadChildArgs;
    const child = spawn(process.execPath, [repoPath('packages/bench/dist/load-child.js'), JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const result = exitJson<LoadChildResult>(child, 'load child');
    const pauses: string[] = [];
    const quiet: number[] = [];
    let partial = '';
    child.stdout.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (!/^(warm|window) \d+$/.test(line)) continue;
        pauses.push(line.replace(/^warm \d+$/, 'warm'));
        // Paused: what reaches the responder in the next 200 ms (nothing, if the callers stopped).
        const at = received;
        void sleep(200).then(() => {
          quiet.push(received - at);
          child.kill('SIGUSR2');
        });
      }
    });
    const r = await result;
    await nc.flush();
    return { result: r, pauses, quiet, received };
  } finally {
    await closeBus(nc);
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

it('measures each window, and between two sends nothing until told to go on', async () => {
  const { result: r, pauses, quiet, received } = await runChild({});
  expect(pauses).toEqual(['warm', 'window 0', 'window 1']);
  expect(quiet).toEqual([0, 0, 0]);
  expect(r.windows).toHaveLength(3);
  expect(r.run).toEqual(r.windows![0]);
  for (const w of r.windows!) {
    expect(w.ok).toBeGreaterThan(0);
    expect(w.ok).toBe(w.sent); // every request sent in a window is answered in it
  }
  expect(received).toBe(r.warmup!.ok + r.windows!.reduce((a, w) => a + w.ok, 0));
}, 60_000);

it('with windowWarmMs, each window counts only what was answered within it, over its own length', async () => {
  const { result: r, pauses, quiet, received } = await runChild({ windowWarmMs: 150 });
  expect(pauses).toEqual(['warm', 'window 0', 'window 1']);
  expect(quiet).toEqual([0, 0, 0]);
  expect(r.windows).toHaveLength(3);
  for (const w of r.windows!) {
    expect(w.elapsedMs).toBe(150); // the window, not the warm-up before it or the replies after it
    expect(w.ok).toBeGreaterThan(0);
    expect(w.itemsPerSec).toBeCloseTo((w.ok * 1000) / 150, 0);
  }
  // The responder answered the windows' warm-ups as well: more than the windows counted.
  const counted = r.warmup!.ok + r.windows!.reduce((a, w) => a + w.ok, 0);
  expect(received).toBeGreaterThan(counted + r.windows!.length);
}, 60_000);
