// `flotilla status --watch`: asks the head for the cluster's status every interval and writes a
// frame (status-view.ts) until its signal aborts (the command aborts it on SIGINT / SIGTERM). A
// failed refresh is shown and the watch goes on: a head failover should not end a dashboard.
import type { ClusterStatus } from '@flotilla/protocol';
import { toFlotillaError } from '@flotilla/protocol';
import { HIDE_CURSOR, SHOW_CURSOR, watchFrame, type WatchSnapshot } from './status-view.js';

export interface WatchOptions {
  intervalMs: number;
  /** Redraw in place (a terminal), else append timestamped snapshots. */
  tty: boolean;
  /** One JSON line per snapshot instead of tables. */
  json?: boolean;
  status: () => Promise<ClusterStatus>;
  write: (text: string) => void;
  /** Aborting ends the watch at once, even in the middle of a refresh. */
  signal: AbortSignal;
  now?: () => number;
  /** The terminal's size now (TTY), read at every frame so a resize takes effect. */
  size?: () => { columns?: number; rows?: number };
}

/** Runs until `signal` aborts; resolves with the number of frames written. */
export async function watchStatus(o: WatchOptions): Promise<number> {
  const now = o.now ?? Date.now;
  const aborted = new Promise<void>((resolve) => {
    if (o.signal.aborted) resolve();
    else o.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  let frames = 0;
  if (o.tty && !o.json) o.write(HIDE_CURSOR);
  try {
    while (!o.signal.aborted) {
      const started = now();
      const snap = await Promise.race([
        o.status().then(
          (status): WatchSnapshot => ({ status }),
          (err): WatchSnapshot => ({ error: toFlotillaError(err).toWire() }),
        ),
        aborted.then(() => undefined),
      ]);
      if (!snap || o.signal.aborted) break;
      o.write(
        o.json
          ? JSON.stringify({ at: new Date(started).toISOString(), ...snap }) + '\n'
          : watchFrame(snap, { tty: o.tty, at: started, intervalMs: o.intervalMs, ...o.size?.() }),
      );
      frames++;
      const wait = Math.max(0, started + o.intervalMs - now());
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise((r) => (timer = setTimeout(r, wait))), aborted]);
      clearTimeout(timer);
    }
  } finally {
    if (o.tty && !o.json) o.write(SHOW_CURSOR);
  }
  return frames;
}
