// Profiles a model on the device its replica runs on: for batch sizes 1, 2, 4, ... it measures
// latency (p50/p99 over timed runs, warm-up excluded), throughput and peak memory, within a time
// budget so a new replica is out of service for a bounded time (default 3 s), and stops early
// once a batch breaks the latency objective or throughput has stopped improving.
import * as ort from 'onnxruntime-node';
import { DTYPES, PROTOCOL_VERSION, elementCount, type ModelProfile, type ProfileRow } from '@flotilla/protocol';
import { chooseBatch } from './batch-size.js';
import type { ModelSignature } from './model-io.js';

/** Time budget of one profile, ms. */
export const DEFAULT_PROFILE_BUDGET_MS = 3000;
/** Latency objective for one batch (p99), ms. */
export const DEFAULT_LATENCY_SLO_MS = 50;
/** Largest batch size tried. */
export const DEFAULT_MAX_PROFILE_BATCH = 64;

export interface ProfileOptions {
  budgetMs?: number;
  latencySloMs?: number;
  maxBatch?: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

function syntheticFeeds(sig: ModelSignature, batch: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const s of sig.inputs) {
    const dims = s.shape.map((d, i) => (i === 0 && sig.batchAxis ? batch : (d as number)));
    const n = elementCount(dims);
    const { array } = DTYPES[s.dtype];
    const data = new array(n);
    if (data instanceof Float32Array || data instanceof Float64Array) for (let i = 0; i < n; i++) data[i] = Math.random() * 2 - 1;
    feeds[s.name] = new ort.Tensor(s.dtype, data as never, dims);
  }
  return feeds;
}

/** Why the model cannot be profiled with synthetic inputs, or null. */
export function unprofilable(sig: ModelSignature): string | null {
  const dynamic = sig.inputs.filter((s) => s.shape.some((d, i) => d === null && !(i === 0 && sig.batchAxis)));
  return dynamic.length ? `inputs ${dynamic.map((s) => `'${s.name}'`).join(', ')} have dynamic non-batch dims: no synthetic input to profile with` : null;
}

export async function profileSession(
  session: ort.InferenceSession,
  sig: ModelSignature,
  base: { digest: string; deviceClass: string; sessionBytes: number; fileBytes: number; rssBaseline: number },
  opts: ProfileOptions = {},
): Promise<ModelProfile> {
  const budgetMs = opts.budgetMs ?? DEFAULT_PROFILE_BUDGET_MS;
  const latencySloMs = opts.latencySloMs ?? DEFAULT_LATENCY_SLO_MS;
  const maxBatch = sig.batchAxis ? (opts.maxBatch ?? DEFAULT_MAX_PROFILE_BATCH) : 1;
  const start = performance.now();
  const rows: ProfileRow[] = [];
  let stoppedBecause = `reached the largest batch tried (${maxBatch})`;
  let bestRate = 0;
  let flat = 0;
  for (let batch = 1; batch <= maxBatch; batch *= 2) {
    const left = budgetMs - (performance.now() - start);
    if (left <= 0) {
      stoppedBecause = `time budget of ${budgetMs} ms spent`;
      break;
    }
    const feeds = syntheticFeeds(sig, batch);
    let peak = process.memoryUsage().rss;
    const w0 = performance.now();
    await session.run(feeds); // warm-up (not timed)
    const warm = performance.now() - w0;
    // Spend at most a fair share of what is left on this size, at least 3 timed runs.
    const share = left / Math.max(1, Math.log2(maxBatch / batch) + 1);
    const runs = Math.max(3, Math.min(30, Math.floor(share / Math.max(warm, 0.01))));
    const times: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) {
      const s = performance.now();
      await session.run(feeds);
      times.push(performance.now() - s);
      peak = Math.max(peak, process.memoryUsage().rss);
      if (i >= 2 && performance.now() - start > budgetMs) break;
    }
    const total = performance.now() - t0;
    times.sort((a, b) => a - b);
    const row: ProfileRow = {
      batch,
      runs: times.length,
      p50Ms: +percentile(times, 50).toFixed(3),
      p99Ms: +percentile(times, 99).toFixed(3),
      itemsPerSec: +((batch * times.length) / (total / 1000)).toFixed(1),
      peakBytes: Math.max(0, peak - base.rssBaseline),
    };
    rows.push(row);
    if (row.p99Ms > latencySloMs) {
      stoppedBecause = `batch ${batch} p99 ${row.p99Ms} ms exceeds the objective of ${latencySloMs} ms`;
      break;
    }
    if (row.itemsPerSec > bestRate * 1.05) {
      bestRate = row.itemsPerSec;
      flat = 0;
    } else if (++flat >= 2) {
      stoppedBecause = `throughput stopped improving after batch ${batch / 4}`;
      break;
    }
  }
  const chosen = chooseBatch(rows, latencySloMs);
  const chosenRow = rows.find((r) => r.batch === chosen.maxBatchSize) ?? rows[0];
  const peakBytes = chosenRow?.peakBytes ?? 0;
  return {
    v: PROTOCOL_VERSION,
    digest: base.digest,
    deviceClass: base.deviceClass,
    ortVersion: ortVersion(),
    createdAt: Date.now(),
    latencySloMs,
    budgetMs,
    tookMs: +(performance.now() - start).toFixed(1),
    rows,
    stoppedBecause,
    chosen,
    memory: {
      sessionBytes: base.sessionBytes,
      peakBytes,
      replicaBytes: Math.max(base.sessionBytes, peakBytes, base.fileBytes),
    },
  };
}

export function ortVersion(): string {
  const v = (ort.env as { versions?: Record<string, string> }).versions;
  return v?.node ?? v?.common ?? 'unknown';
}

/** A device class name profiles are shared under: same CPU model, cores and threads (or GPU model). */
export function deviceClass(kind: 'cpu' | 'gpu', model: string, cores: number, threads: number, provider: string): string {
  const slug = model.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'unknown';
  return kind === 'cpu' ? `cpu-${slug}-${cores}c-t${threads}` : `gpu-${slug}-${provider}`;
}
