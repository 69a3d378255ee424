// scripts/gpu-check's driver, run where there is no GPU: a stand-in GPU of the inventory override
// served by the CPU provider takes the GPU code paths (placement on gpu:0, its ledger, eviction by
// its budget, outputs through NATS); and with the CUDA provider absent it says why and fails.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoPath } from './deps.js';
import { providerUnavailable } from '@flotilla/worker';
import type { StepResult } from './gpu-compare.js';

const driver = repoPath('packages/bench/dist/gpu-check.js');

function check(args: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'gpu-check-'));
  try {
    const r = spawnSync(process.execPath, [driver, ...args, '--out', join(dir, 'out.json'), '--cluster-log', join(dir, 'cluster.log')], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    const doc = existsSync(join(dir, 'out.json'))
      ? (JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as { steps: StepResult[]; verdict: string })
      : undefined;
    const clusterLog = existsSync(join(dir, 'cluster.log')) ? readFileSync(join(dir, 'cluster.log'), 'utf8') : '';
    return { status: r.status, stderr: r.stderr, doc, clusterLog, step: (name: string) => doc?.steps.find((s) => s.step === name) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('gpu-check driver', () => {
  test('a stand-in GPU: deployments land on gpu:0, outputs match, FIFO eviction by the device budget', () => {
    const r = check(['--provider', 'cpu', '--fake-gpu', '--models', 'wide-mlp,conv-classifier,tiny-encoder']);
    // A failed step shows itself (its reason and detail), not only the verdict that counts it.
    expect({ verdict: r.doc?.verdict, failed: r.doc?.steps.filter((s) => !s.ok) }).toEqual({
      verdict: 'gpu-check: all 7 steps passed',
      failed: [],
    });
    expect(r.status).toBe(0);
    const inv = r.step('inventory')!.detail as { gpus: Array<{ model: string }>; devices: Array<{ id: string }> };
    expect(inv.devices.map((d) => d.id)).toEqual(['cpu', 'gpu:0']);
    const placed = r.step('deploy on gpu, outputs vs CPU')!.detail as {
      rows: Array<{
        model: string;
        device: string;
        executionProvider: string;
        sessionHost: string;
        compared: Array<{ ok: boolean; dims: string[] }>;
      }>;
    };
    // `--session-host auto`: the stand-in GPU's sessions run on the CPU provider, on a 2-core worker,
    // so they stay on the event loop (session-plan.test.ts has the rule for a real GPU).
    expect(placed.rows.map((x) => [x.model, x.device, x.executionProvider, x.sessionHost])).toEqual([
      ['wide-mlp', 'gpu:0', 'cpu', 'event-loop'],
      ['wide-mlp', 'gpu:0', 'cpu', 'thread'], // deployed with sessionHost: 'thread'
      ['tiny-encoder', 'gpu:0', 'cpu', 'event-loop'],
      ['conv-classifier', 'gpu:0', 'cpu', 'event-loop'],
    ]);
    // The dynamic-shape classifier answered at two input sizes.
    expect(placed.rows.find((x) => x.model === 'conv-classifier')!.compared.map((c) => c.dims[0])).toEqual(['1x3x64x64', '1x3x96x128']);
    // A new shape under traffic: one request per batch before its profile, then the profile's choice.
    const shaped = r.step('shape profile while serving')!.detail as {
      shape: { state: string; maxBatchSize: number };
      beforeProfile: { batches: Record<string, number> };
      afterProfile: { itemsPerSec: number; batches: Record<string, number> };
    };
    expect(shaped.shape.state).toBe('measured');
    // The cluster's own log records the profile (what to read when a GPU run surprises).
    expect(r.clusterLog).toMatch(/"msg":"shape profile"/);
    expect(Object.keys(shaped.beforeProfile.batches)).toEqual(['1']);
    expect(shaped.afterProfile.itemsPerSec).toBeGreaterThan(0);
    expect(Math.max(...Object.keys(shaped.afterProfile.batches).map(Number))).toBeLessThanOrEqual(shaped.shape.maxBatchSize);
    const ev = r.step('eviction by VRAM budget')!.detail as {
      evicted: Array<{ model: string; device: string }>;
      maxOverBudgetMiB: number;
      heartbeats: number;
      deployed: string[];
    };
    expect(ev.deployed).toEqual(['ev-1', 'ev-2', 'ev-3']);
    expect(ev.evicted.slice(0, 2)).toEqual([
      expect.objectContaining({ model: 'ev-1', device: 'gpu:0' }),
      expect.objectContaining({ model: 'ev-2', device: 'gpu:0' }),
    ]);
    expect(ev.maxOverBudgetMiB).toBeLessThanOrEqual(0);
    expect(ev.heartbeats).toBeGreaterThan(3);
  }, 120_000);

  test('without the CUDA provider installed it says why and fails', () => {
    const why = providerUnavailable('cuda');
    if (!why) return; // this machine has onnxruntime's CUDA provider: the GPU run itself is the test
    const r = check(['--provider', 'cuda', '--models', 'mlp']);
    expect(r.status).toBe(1);
    expect(r.step('provider')).toMatchObject({ ok: false, error: why });
    expect(r.step('inventory')?.ok).toBe(false);
    expect(r.doc?.verdict).toMatch(/steps failed: provider, in-process outputs vs CPU, inventory/);
  }, 120_000);
});
