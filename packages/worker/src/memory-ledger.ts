// Per-device memory accounting, pure: each device has a budget and a list of charges (one per
// replica, in load order). A charge is only taken when it fits, so the sum never exceeds the budget.
import type { DeviceKind } from '@flotilla/protocol';

export interface LedgerDevice {
  id: string;
  kind: DeviceKind;
  capacityBytes: number;
  budgetBytes: number;
}

export interface Charge {
  owner: string;
  model: string;
  bytes: number;
  at: number;
}

export class MemoryLedger {
  private readonly charges = new Map<string, Charge[]>();
  private readonly devices = new Map<string, LedgerDevice>();

  constructor(devices: LedgerDevice[]) {
    for (const d of devices) {
      this.devices.set(d.id, d);
      this.charges.set(d.id, []);
    }
  }

  device(id: string): LedgerDevice | undefined {
    return this.devices.get(id);
  }

  list(): LedgerDevice[] {
    return [...this.devices.values()];
  }

  used(id: string): number {
    return (this.charges.get(id) ?? []).reduce((n, c) => n + c.bytes, 0);
  }

  free(id: string): number {
    const d = this.devices.get(id);
    return d ? d.budgetBytes - this.used(id) : 0;
  }

  /** Charges in load order (oldest first). */
  chargesOn(id: string): readonly Charge[] {
    return this.charges.get(id) ?? [];
  }

  /** Takes the charge when it fits the device's budget; false (nothing changed) otherwise. */
  tryCharge(deviceId: string, charge: Charge): boolean {
    const list = this.charges.get(deviceId);
    if (!list || this.free(deviceId) < charge.bytes) return false;
    list.push(charge);
    return true;
  }

  /** Changes an existing charge (e.g. to the profiled footprint); growing must still fit. */
  resize(owner: string, bytes: number): boolean {
    for (const [id, list] of this.charges) {
      const c = list.find((x) => x.owner === owner);
      if (!c) continue;
      if (bytes > c.bytes && this.free(id) < bytes - c.bytes) return false;
      c.bytes = bytes;
      return true;
    }
    return false;
  }

  release(owner: string): number {
    for (const list of this.charges.values()) {
      const i = list.findIndex((c) => c.owner === owner);
      if (i >= 0) return list.splice(i, 1)[0]!.bytes;
    }
    return 0;
  }
}

/**
 * A replica's footprint measured at load, for when no profile says: the growth of the device's
 * used memory across the session create (on CPU the process's resident memory outside V8's heap
 * and array buffers; the GPU's used VRAM, from nvidia-smi, on a GPU), never below the model file's size. Undefined when nothing usable was
 * measured (then the estimate stands).
 */
export function measuredFootprint(m: {
  onGpu: boolean;
  rssDeltaBytes: number;
  vramDeltaBytes?: number;
  fileBytes: number;
}): number | undefined {
  const delta = m.onGpu ? m.vramDeltaBytes : m.rssDeltaBytes;
  return delta !== undefined && delta > 0 ? Math.max(delta, m.fileBytes) : undefined;
}

/**
 * VRAM a session took between two readings: this process's own growth where nvidia-smi lists it
 * (what other processes on the GPU load meanwhile does not count: workers sharing a GPU load at
 * the same time), else the fall of the GPU's free memory; undefined without readings.
 */
export function vramDelta(
  before: { ownBytes?: number; freeBytes?: number },
  after: { ownBytes?: number; freeBytes?: number },
): number | undefined {
  if (after.ownBytes !== undefined) return after.ownBytes - (before.ownBytes ?? 0);
  if (before.freeBytes !== undefined && after.freeBytes !== undefined) return before.freeBytes - after.freeBytes;
  return undefined;
}

/**
 * The devices a worker charges its replicas against: its host's memory, and each GPU's VRAM — the
 * worker's `gpuShare` of it where several worker processes share one GPU (each runs its own event
 * loop: a GPU model whose requests keep one loop busy serves more from several) — each with a budget
 * of `memoryBudgetBytes` or its capacity less `headroom`.
 */
export function workerDevices(
  inventory: { memoryTotalBytes: number; gpus: readonly { index: number; vramTotalBytes: number }[] },
  o: { memoryBudgetBytes?: number; headroom: number; gpuShare: number },
): LedgerDevice[] {
  const budget = (capacity: number) => o.memoryBudgetBytes ?? Math.floor(capacity * (1 - o.headroom));
  return [
    { id: 'cpu', kind: 'cpu', capacityBytes: inventory.memoryTotalBytes, budgetBytes: budget(inventory.memoryTotalBytes) },
    ...inventory.gpus.map((g) => {
      const capacityBytes = Math.floor(g.vramTotalBytes * o.gpuShare);
      return { id: `gpu:${g.index}`, kind: 'gpu' as const, capacityBytes, budgetBytes: budget(capacityBytes) };
    }),
  ];
}
