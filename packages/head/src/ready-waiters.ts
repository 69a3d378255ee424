// Callers of `ensure` waiting for a model to have a ready replica. The head wakes a model's
// waiters when something that could settle them happens (a heartbeat with a ready replica, a
// load result, losing leadership); each waiter re-checks its own condition then.

export class ReadyWaiters {
  private readonly byModel = new Map<string, Set<() => void>>();

  /** Resolves at the first wake-up at which `settled()` holds, or after `ms`. */
  wait(model: string, ms: number, settled: () => boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      const waiters = this.byModel.get(model) ?? new Set<() => void>();
      this.byModel.set(model, waiters);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
        if (waiters.size === 0 && this.byModel.get(model) === waiters) this.byModel.delete(model);
        resolve();
      };
      const check = () => {
        if (settled()) done();
      };
      const timer = setTimeout(done, ms);
      waiters.add(check);
    });
  }

  /** Re-checks the waiters of `model`. */
  wake(model: string): void {
    const waiters = this.byModel.get(model);
    if (waiters) for (const check of [...waiters]) check();
  }

  wakeAll(): void {
    for (const model of [...this.byModel.keys()]) this.wake(model);
  }

  /** Models with waiters. */
  get size(): number {
    return this.byModel.size;
  }
}
