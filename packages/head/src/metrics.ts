// Prometheus metrics of the head: workers by state, desired and ready replicas per deployment,
// read from the head's state at scrape time.
import { Gauge, Registry } from 'prom-client';
import type { ClusterStatus } from '@flotilla/protocol';

export function headMetrics(status: () => ClusterStatus, lastTickMs: () => number = () => 0): { text(): Promise<string> } {
  const registry = new Registry();
  const registers = [registry];
  new Gauge({
    name: 'flotilla_workers',
    help: 'Workers known to the head, by liveness',
    labelNames: ['alive'],
    registers,
    collect() {
      const s = status();
      this.set({ alive: 'true' }, s.workers.filter((w) => w.alive).length);
      this.set({ alive: 'false' }, s.workers.filter((w) => !w.alive).length);
    },
  });
  new Gauge({
    name: 'flotilla_replicas',
    help: 'Replicas per deployment: desired and ready',
    labelNames: ['model', 'kind'],
    registers,
    collect() {
      this.reset();
      for (const d of status().deployments) {
        this.set({ model: d.spec.name, kind: 'desired' }, d.spec.replicas);
        this.set({ model: d.spec.name, kind: 'ready' }, d.ready);
      }
    },
  });
  new Gauge({
    name: 'flotilla_head_tick_seconds',
    help: 'Time the last reconcile round (autoscale + placement over every deployment) took',
    registers,
    collect() {
      this.set(lastTickMs() / 1000);
    },
  });
  return { text: () => registry.metrics() };
}
