// Measured windows that take turns with something else (paired.ts): a load generator child stops
// its callers (every request answered), prints a pause line and waits for SIGUSR2 before each
// window; the bench times the model in-process, or lets another server's load run, meanwhile.
// Shared by the bench's load children: Flotilla's and raw NATS's (load-child.ts), Moleculer's
// (peer-moleculer-load.ts) and Triton's (peer-triton-load.ts). The bench side is `pauseLines`.
import type { ChildProcess } from 'node:child_process';
import { LoadStats, type LoadSummary } from '@flotilla/loadgen';

/** What a load child is told about its turns. */
export interface TurnArgs {
  /** Windows to measure in turns (0 or absent: none). */
  turns?: number;
  /** Each turn's length, ms. */
  turnMs?: number;
  /** How long each turn's callers run before it counts, ms (only what is answered within the turn counts). */
  turnWarmMs?: number;
}

/** A peer's load generator's turns: what it is told, and the bench's hook for each of its pauses. */
export interface PeerTurns extends TurnArgs {
  onPause: (line: string) => Promise<void>;
}

/** What a peer's load generator is told of its turns (none without them). */
export function turnArgs(t: PeerTurns | undefined): TurnArgs {
  return t ? { turns: t.turns, turnMs: t.turnMs, turnWarmMs: t.turnWarmMs } : {};
}

/** Keeps only the requests answered from `from` to `to` (performance.now() ms). */
export class IntervalStats extends LoadStats {
  constructor(
    private readonly from: number,
    private readonly to: number,
  ) {
    super();
  }
  private within(): boolean {
    const t = performance.now();
    return t >= this.from && t <= this.to;
  }
  override markSent(): void {
    if (this.within()) super.markSent();
  }
  override recordOk(latencyMs: number, items: number): void {
    if (this.within()) super.recordOk(latencyMs, items);
  }
  override recordError(code: string): void {
    if (this.within()) super.recordError(code);
  }
  override recordRetry(): void {
    if (this.within()) super.recordRetry();
  }
  /** The window's figures over its own length. */
  windowSummary(): LoadSummary {
    return this.summary(this.to - this.from);
  }
}

/**
 * Prints `line` and resolves on the next SIGUSR2 (the listener is in place before the line is out).
 * A timer keeps the process alive meanwhile: a signal listener does not, and a child whose sockets
 * are idle (an HTTP agent's keep-alive ones are unref'd) would otherwise end while it waits.
 */
export function pauseFor(line: string): Promise<void> {
  const alive = setInterval(() => undefined, 60_000);
  const go = new Promise<void>((resolve) =>
    process.once('SIGUSR2', () => {
      clearInterval(alive);
      resolve();
    }),
  );
  process.stdout.write(`${line}\n`);
  return go;
}

/**
 * One window of `durationMs` of `once`'s load; with `warmMs`, its callers start that long before
 * and only what is answered within the window counts.
 */
export async function measureWindow(
  once: (durationMs: number, stats?: LoadStats) => Promise<LoadSummary>,
  durationMs: number,
  warmMs = 0,
): Promise<LoadSummary> {
  if (warmMs <= 0) return once(durationMs);
  const from = performance.now() + warmMs;
  const stats = new IntervalStats(from, from + durationMs);
  await once(warmMs + durationMs, stats);
  return stats.windowSummary();
}

/** `a.turns` windows, each after a pause (`turn <i>`): their summaries. */
export async function measureTurns(
  a: TurnArgs,
  once: (durationMs: number, stats?: LoadStats) => Promise<LoadSummary>,
): Promise<LoadSummary[]> {
  const out: LoadSummary[] = [];
  for (let i = 0; i < (a.turns ?? 0); i++) {
    await pauseFor(`turn ${i}`);
    out.push(await measureWindow(once, a.turnMs ?? 0, a.turnWarmMs ?? 0));
  }
  return out;
}

/**
 * The bench side: calls `onPause` for each pause line of `child` (`warm <n>`, `window <i>`,
 * `turn <i>`) and lets the child go on (SIGUSR2) once it has resolved, or failed.
 */
export function pauseLines(child: ChildProcess, onPause: (line: string) => Promise<void>): void {
  let partial = '';
  child.stdout?.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!/^(warm|window|turn) \d+$/.test(line)) continue;
      const go = () => void child.kill('SIGUSR2');
      onPause(line).then(go, go);
    }
  });
}

/** See turnTaker. */
export interface TurnTaker {
  onPause: () => Promise<void>;
  go: () => Promise<void>;
  paused: () => Promise<void>;
  abandon: () => void;
}

/**
 * A load child's pauses (childLoad's `onPause`) held until released: `go` waits until the child is
 * paused and lets it run its next window; `paused` resolves when it pauses again; after `abandon`
 * it runs its remaining windows unheld.
 */
export function turnTaker(): TurnTaker {
  let reached!: () => void;
  let next = new Promise<void>((r) => (reached = r));
  let release: () => void = () => undefined;
  let abandoned = false;
  return {
    onPause: () => {
      if (abandoned) return Promise.resolve();
      const held = new Promise<void>((r) => (release = r));
      reached();
      return held;
    },
    go: async () => {
      await next;
      next = new Promise<void>((r) => (reached = r));
      release();
    },
    paused: () => next,
    abandon: () => {
      abandoned = true;
      release();
    },
  };
}

/** A load child taking turns: its pauses' holder, and its result. */
export interface Turned {
  turns: TurnTaker;
  done: Promise<unknown>;
}

/**
 * `first` measures n + 1 windows and `second` n, alternately, `first` first, once both hold at
 * their first pause: each window starts once the other's has ended (its child paused again, or
 * exited after its last). A failure of either, or either ending early, ends the turns, rejecting,
 * and leaves both to finish their windows unheld.
 */
export async function takeTurns(first: Turned, second: Turned, n: number): Promise<void> {
  // A child that fails, or ends before its last turn (it took fewer windows than asked), ends the turns.
  const ending = new Set<Turned>();
  const early = (t: Turned) =>
    t.done.then(() => {
      if (!ending.has(t)) throw new Error('a load child ended before its turns did');
      return new Promise<never>(() => undefined);
    });
  const failed = Promise.race([early(first), early(second)]);
  const turn = async (t: Turned, last: boolean) => {
    if (last) ending.add(t);
    await Promise.race([t.turns.go(), failed]);
    await Promise.race([last ? t.done : t.turns.paused(), failed]);
  };
  try {
    // Neither starts before both hold at their first pause (past any warm-up).
    await Promise.race([Promise.all([first.turns.paused(), second.turns.paused()]), failed]);
    for (let i = 0; i <= n; i++) {
      await turn(first, i === n);
      if (i < n) await turn(second, i === n - 1);
    }
  } catch (err) {
    first.turns.abandon();
    second.turns.abandon();
    throw err;
  }
}
