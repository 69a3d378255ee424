// Limits the container runtime puts on this process: a Kubernetes pod with `limits.cpu: 4` and
// `limits.memory: 8Gi` on a 64-core, 256 GiB node must budget 4 cores and 8 GiB, not the node's.
// Reads cgroup v2 (`cpu.max`, `memory.max`) and falls back to v1 (`cpu.cfs_quota_us`,
// `memory.limit_in_bytes`); absent files or "no limit" values leave a field undefined.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CgroupLimits {
  /** CPU quota in cores (may be fractional), when limited. */
  cpus?: number;
  /** Memory limit, bytes, when limited. */
  memoryBytes?: number;
}

/** v1 reports "unlimited" as a page-rounded 2^63; anything this large is no limit. */
const UNLIMITED_BYTES = 2 ** 62;

/** cgroup v2 `cpu.max`: "max 100000" (no limit) or "<quota> <period>". */
export function parseCpuMax(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  return quotaCores(quota, period ?? '100000');
}

/** cgroup v1 `cpu.cfs_quota_us` (-1: no limit) and `cpu.cfs_period_us`. */
export function quotaCores(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota);
  const p = Number(period);
  return Number.isFinite(q) && Number.isFinite(p) && q > 0 && p > 0 ? q / p : undefined;
}

/** cgroup v2 `memory.max` ("max" or bytes) or v1 `memory.limit_in_bytes`. */
export function parseMemoryLimit(text: string): number | undefined {
  const n = Number(text.trim());
  return Number.isFinite(n) && n > 0 && n < UNLIMITED_BYTES ? n : undefined;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function readCgroupLimits(root = '/sys/fs/cgroup'): CgroupLimits {
  const v2cpu = read(join(root, 'cpu.max'));
  const v2mem = read(join(root, 'memory.max'));
  const cpus =
    v2cpu !== undefined
      ? parseCpuMax(v2cpu)
      : quotaCores(read(join(root, 'cpu', 'cpu.cfs_quota_us'))?.trim(), read(join(root, 'cpu', 'cpu.cfs_period_us'))?.trim());
  const memText = v2mem ?? read(join(root, 'memory', 'memory.limit_in_bytes'));
  const memoryBytes = memText === undefined ? undefined : parseMemoryLimit(memText);
  return { ...(cpus !== undefined ? { cpus } : {}), ...(memoryBytes !== undefined ? { memoryBytes } : {}) };
}
