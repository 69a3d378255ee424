// Poll-until for tests and tools: waits for a condition that has no event to await.

/**
 * Calls `fn` every `everyMs` until it returns a truthy value, which it resolves with; rejects
 * with "`what`: not met within `timeoutMs` ms" after the deadline.
 */
export async function until<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: { timeoutMs?: number; what?: string; everyMs?: number } = {},
): Promise<T> {
  const { timeoutMs = 15_000, what = 'condition', everyMs = 50 } = opts;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
