// What the worker's host has: CPU, memory and GPUs, measured with systeminformation (and
// nvidia-smi where systeminformation lacks VRAM). Config may override any part — for tests and
// GPU-less machines — but the measuring code always runs first.
import { execFile } from 'node:child_process';
import { availableParallelism, hostname } from 'node:os';
import { promisify } from 'node:util';
import si from 'systeminformation';
import type { GpuInfo, Inventory } from '@flotilla/protocol';
import { readCgroupLimits, type CgroupLimits } from './cgroup-limits.js';

const MiB = 1024 * 1024;

export interface InventoryOverride {
  cpu?: Partial<Inventory['cpu']>;
  memory?: Partial<Inventory['memory']>;
  /** Replaces the measured GPU list. */
  gpus?: GpuInfo[];
}

/** The fields of each non-empty line of nvidia-smi's `--format=csv,noheader,nounits` output. */
function csvRows(csv: string): string[][] {
  return csv
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => l.split(',').map((s) => s.trim()));
}

/** nvidia-smi's CSV answer to `query` ('' where it is missing or fails). */
async function nvidiaSmi(query: string): Promise<string> {
  try {
    return (await promisify(execFile)('nvidia-smi', [query, '--format=csv,noheader,nounits'], { timeout: 5000 })).stdout;
  } catch {
    return '';
  }
}

/** Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(csv: string): GpuInfo[] {
  return csvRows(csv)
    .map(([index, name, total, free]) => {
      return {
        index: Number(index),
        vendor: 'NVIDIA',
        model: name ?? 'unknown',
        vramTotalBytes: Number(total) * MiB,
        vramFreeBytes: Number(free) * MiB,
      };
    })
    .filter((g) => Number.isInteger(g.index) && g.vramTotalBytes > 0);
}

export async function readNvidiaSmi(): Promise<GpuInfo[]> {
  return parseNvidiaSmi(await nvidiaSmi('--query-gpu=index,name,memory.total,memory.free'));
}

/** One reading of a GPU's memory (bytes): what this process holds on it, and what is free on it. */
export interface VramReading {
  /** This process's memory on the GPU; undefined when nvidia-smi does not list it (no CUDA context yet, or a PID namespace hides it). */
  ownBytes?: number;
  freeBytes?: number;
}

/** Parses `nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits`. */
export function parseComputeApps(csv: string): { gpuUuid: string; pid: number; usedBytes: number }[] {
  return csvRows(csv)
    .filter((f) => f.length >= 3)
    .map(([gpuUuid, pid, used]) => ({ gpuUuid: gpuUuid!, pid: Number(pid), usedBytes: Number(used) * MiB }))
    .filter((a) => Number.isInteger(a.pid) && Number.isFinite(a.usedBytes));
}

/**
 * GPU `index`'s free memory and what process `pid` holds on it (nvidia-smi's compute apps), read
 * together; undefined where nvidia-smi is missing, fails or has no such GPU.
 */
export async function readVram(index: number, pid = process.pid): Promise<VramReading | undefined> {
  const [gpus, apps] = await Promise.all([
    nvidiaSmi('--query-gpu=index,uuid,memory.free'),
    nvidiaSmi('--query-compute-apps=gpu_uuid,pid,used_memory'),
  ]);
  const gpu = csvRows(gpus).find((f) => f.length >= 3 && Number(f[0]) === index);
  const freeBytes = Number(gpu?.[2]) * MiB;
  if (!gpu || !Number.isFinite(freeBytes)) return undefined;
  const own = parseComputeApps(apps).filter((a) => a.gpuUuid === gpu[1] && a.pid === pid);
  return { freeBytes, ...(own.length ? { ownBytes: own.reduce((n, a) => n + a.usedBytes, 0) } : {}) };
}

export async function measureGpus(): Promise<GpuInfo[]> {
  let controllers: si.Systeminformation.GraphicsControllerData[];
  try {
    controllers = (await si.graphics()).controllers;
  } catch {
    controllers = [];
  }
  const smi = await readNvidiaSmi();
  if (smi.length > 0) return smi; // nvidia-smi knows free VRAM exactly
  return controllers
    .filter((c) => (c.vram ?? 0) > 0 || (c.memoryTotal ?? 0) > 0)
    .map((c, index) => ({
      index,
      vendor: c.vendor ?? 'unknown',
      model: c.model ?? 'unknown',
      vramTotalBytes: (c.memoryTotal ?? c.vram ?? 0) * MiB,
      vramFreeBytes: (c.memoryFree ?? c.memoryTotal ?? c.vram ?? 0) * MiB,
    }));
}

/** Cores this process may keep busy: host cores, bounded by CPU affinity and the cgroup quota. */
export function usableCores(hostCores: number, affinity: number, limits: CgroupLimits): number {
  return Math.max(1, Math.min(hostCores, affinity, limits.cpus !== undefined ? Math.ceil(limits.cpus) : Infinity));
}

export async function measureInventory(override: InventoryOverride = {}, limits: CgroupLimits = readCgroupLimits()): Promise<Inventory> {
  const [cpu, mem, gpus] = await Promise.all([si.cpu(), si.mem(), measureGpus()]);
  const limit = limits.memoryBytes;
  const measured: Inventory = {
    cpu: {
      cores: cpu.cores,
      model: `${cpu.manufacturer} ${cpu.brand}`.trim(),
      usableCores: usableCores(cpu.cores, availableParallelism(), limits),
    },
    memory: {
      totalBytes: Math.min(mem.total, limit ?? Infinity),
      availableBytes: Math.min(mem.available, limit ?? Infinity),
      ...(limit !== undefined ? { cgroupLimitBytes: limit } : {}),
    },
    gpus,
    source: 'measured',
    hostname: hostname(),
  };
  const overridden = override.cpu !== undefined || override.memory !== undefined || override.gpus !== undefined;
  const cores = override.cpu?.cores ?? measured.cpu.cores;
  return {
    // Overriding the core count bounds the usable cores too (never above what was measured).
    cpu: { ...measured.cpu, ...override.cpu, usableCores: Math.min(cores, override.cpu?.usableCores ?? measured.cpu.usableCores ?? cores) },
    memory: { ...measured.memory, ...override.memory },
    gpus: override.gpus ?? measured.gpus,
    source: overridden ? 'override' : 'measured',
    hostname: measured.hostname,
  };
}
