// `flotilla describe MODEL`: one deployment as people read it — the spec in a few lines, its
// replicas, and the model's signature (inputs and outputs with dims; symbolic names as the model
// declares them, -1 for a dynamic dim without a name, as KServe writes dynamic dims).
import type { DeploymentStatus, ModelSignature } from '@flotilla/protocol';
import { formatBytes, table } from './format.js';

/** One dim as `describe` prints it: a number, the symbolic name, or -1 (dynamic, unnamed). */
export function dimText(d: number | string | null): string {
  return d === null ? '-1' : String(d);
}

function signatureText(sig: ModelSignature | undefined): string {
  if (!sig) return 'signature: not known yet (no replica of this file has loaded)\n';
  const rows = (kind: string, ts: ModelSignature['inputs']) =>
    ts.map((t) => [kind, t.name, t.dtype, `[${t.shape.map(dimText).join(', ')}]`]);
  return (
    `signature (${sig.batchAxis ? 'batch axis: dim 0, requests batched' : 'no batch axis: runs unbatched'}):\n` +
    table(['', 'NAME', 'DTYPE', 'DIMS'], [...rows('input', sig.inputs), ...rows('output', sig.outputs)]) +
    '\n'
  );
}

export function describeText(d: DeploymentStatus): string {
  const s = d.spec;
  const scale =
    s.minReplicas !== undefined || s.maxReplicas !== undefined
      ? ` (autoscaling ${s.minReplicas ?? s.replicas}..${s.maxReplicas ?? s.replicas})`
      : '';
  const batching = Object.entries(s.batching)
    .map(([k, v]) => `${k} ${String(v)}`)
    .join(', ');
  const lines = [
    `model    ${s.name}`,
    `file     ${formatBytes(s.sizeBytes)}, sha256 ${s.digest}`,
    `device   ${s.device}${s.device === 'gpu' && !s.allowFallback ? ' (no CPU fallback)' : ''}${s.pin ? ', pinned' : ''}`,
    `replicas ${d.ready}/${s.replicas} ready${scale}${d.dormant ? ', dormant (evicted; loads again on the next request)' : ''}`,
    `batching ${batching || 'from the profile or the defaults'}`,
    `created  ${new Date(d.createdAt).toISOString()}`,
    ...(d.pendingReason ? [`pending  ${d.pendingReason.code}: ${d.pendingReason.message}`] : []),
  ];
  const replicas = d.replicas.length
    ? table(
        ['REPLICA', 'WORKER', 'DEVICE', 'STATE', 'QUEUE', 'ERROR'],
        d.replicas.map((r) => [
          r.id,
          r.workerId,
          r.device,
          r.state,
          r.queueDepth ?? '-',
          r.error ? `${r.error.code}: ${r.error.message}` : '',
        ]),
      )
    : 'no replicas';
  return `${lines.join('\n')}\n\n${replicas}\n\n${signatureText(d.signature)}`;
}
