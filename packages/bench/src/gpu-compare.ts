// Pure parts of `scripts/gpu-check`: how a GPU output is compared with the CPU's, how the
// eviction scenario sizes its VRAM budget, and what the check's verdict is.

/** How far a GPU output is from the CPU's for the same input. */
export interface OutputDiff {
  /** Elements compared. */
  count: number;
  /** Largest |gpu − cpu|. */
  maxAbs: number;
  /** Largest |cpu| (the output's scale). */
  scale: number;
  /** Elements that are NaN or infinite on one side only. */
  nonFinite: number;
  /** Within tolerance: every |gpu − cpu| ≤ tol × max(1, scale), same length, same non-finite elements. */
  ok: boolean;
  /** Why not, when not ok. */
  why?: string;
}

/** The tolerance of the GPU-vs-CPU comparison (the 1e-3, relative to outputs larger than 1). */
export const OUTPUT_TOLERANCE = 1e-3;

/**
 * Compares `got` (GPU) with `ref` (CPU), element by element. The bound is absolute for outputs of
 * magnitude ≤ 1 and relative to the output's largest element above that (logits of a few
 * hundred differ in their last float32 digits between any two correct kernels).
 */
export function compareOutputs(ref: ArrayLike<number | bigint>, got: ArrayLike<number | bigint>, tol = OUTPUT_TOLERANCE): OutputDiff {
  if (ref.length !== got.length)
    return { count: 0, maxAbs: Infinity, scale: 0, nonFinite: 0, ok: false, why: `${got.length} elements, expected ${ref.length}` };
  let maxAbs = 0;
  let scale = 0;
  let nonFinite = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = Number(ref[i]);
    const b = Number(got[i]);
    if (!Number.isFinite(a) || !Number.isFinite(b)) {
      if (!Object.is(a, b)) nonFinite++;
      continue;
    }
    scale = Math.max(scale, Math.abs(a));
    maxAbs = Math.max(maxAbs, Math.abs(a - b));
  }
  const bound = tol * Math.max(1, scale);
  const why =
    nonFinite > 0
      ? `${nonFinite} elements non-finite on one side only`
      : maxAbs > bound
        ? `max |gpu − cpu| ${maxAbs.toExponential(2)} > ${bound.toExponential(2)}`
        : undefined;
  return { count: ref.length, maxAbs, scale, nonFinite, ok: why === undefined, ...(why ? { why } : {}) };
}

/** Folds the per-output diffs of one run into one (the worst output decides). */
export function worstDiff(diffs: Record<string, OutputDiff>): OutputDiff & { output?: string } {
  const bad = (x: OutputDiff) => (x.ok ? 0 : 1);
  let worst: (OutputDiff & { output?: string }) | undefined;
  for (const [output, d] of Object.entries(diffs)) {
    if (
      !worst ||
      bad(d) > bad(worst) ||
      (bad(d) === bad(worst) && d.maxAbs / Math.max(1, d.scale) > worst.maxAbs / Math.max(1, worst.scale))
    )
      worst = { ...d, output };
  }
  return worst ?? { count: 0, maxAbs: 0, scale: 0, nonFinite: 0, ok: false, why: 'no outputs' };
}

/**
 * The worker's device budget for the eviction scenario: room for two replicas of a model whose
 * profile charges `replicaBytes` each, not three (so the third load must evict).
 */
export function evictionBudget(replicaBytes: number): number {
  if (!(replicaBytes > 0)) throw new Error(`a replica charge of ${replicaBytes} bytes cannot size the eviction budget`);
  return Math.floor(2.5 * replicaBytes);
}

export interface StepResult {
  step: string;
  ok: boolean;
  ms: number;
  detail?: unknown;
  error?: string;
}

/** Exit code and one line for the whole check: every step must pass. */
export function verdict(steps: readonly StepResult[]): { code: number; line: string } {
  const failed = steps.filter((s) => !s.ok);
  return failed.length === 0
    ? { code: 0, line: `gpu-check: all ${steps.length} steps passed` }
    : { code: 1, line: `gpu-check: ${failed.length} of ${steps.length} steps failed: ${failed.map((s) => s.step).join(', ')}` };
}
