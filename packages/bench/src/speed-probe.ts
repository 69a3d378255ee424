// The bench's host-speed probe (host-drift.ts): a child running inproc.js in probe mode, pinned to
// the replica's core with the model's session open, timed on demand (SIGUSR2 → one JSON line).
import type { ChildProcess } from 'node:child_process';
import { readyLine, stopPeer, untilLine } from './peer-process.js';

export class SpeedProbe {
  private partial = '';
  private onLine?: (line: string) => void;

  private constructor(private readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => {
      const lines = (this.partial + d.toString()).split('\n');
      this.partial = lines.pop()!;
      for (const line of lines) this.onLine?.(line);
    });
  }

  /** Waits until the child's session is open (its `ready` line). */
  static async start(child: ChildProcess, timeoutMs = 120_000): Promise<SpeedProbe> {
    await untilLine(child, 'speed probe', readyLine, timeoutMs);
    return new SpeedProbe(child);
  }

  /** One timed measure: the model's items/s now; undefined when the child is gone or took over `timeoutMs`. */
  probe(timeoutMs = 60_000): Promise<number | undefined> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (v: number | undefined) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        this.onLine = undefined;
        resolve(v);
      };
      const onExit = () => done(undefined);
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.onLine = (line) => {
        try {
          const row = JSON.parse(line) as { itemsPerSec?: unknown };
          if (typeof row.itemsPerSec === 'number') done(row.itemsPerSec);
        } catch {
          // not a result line
        }
      };
      this.child.once('exit', onExit);
      this.child.kill('SIGUSR2');
    });
  }

  stop(): Promise<void> {
    return stopPeer(this.child);
  }
}
