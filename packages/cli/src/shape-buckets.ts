// `deploy --shape-buckets seq=16,32,64` (repeatable, or `;`-separated: `H=32,64;W=128,256`) →
// the deployment's `profile.buckets`: bucket upper bounds per symbolic dim, sorted, duplicates dropped.
import { BadRequestError } from '@flotilla/protocol';

export type ShapeBuckets = Record<string, number[]>;

/** Adds the buckets in `text` to `previous` (commander's accumulator for a repeated option); a dim named twice is refused. */
export function parseShapeBuckets(text: string, previous: ShapeBuckets = {}): ShapeBuckets {
  const out: ShapeBuckets = { ...previous };
  for (const part of text
    .split(';')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^([^=\s]+)\s*=\s*(.+)$/.exec(part);
    if (!m) throw new BadRequestError(`--shape-buckets: '${part}' is not DIM=B1,B2,... (e.g. seq=16,32,64)`);
    const [, dim, list] = m as unknown as [string, string, string];
    if (dim in out) throw new BadRequestError(`--shape-buckets: dim '${dim}' given twice`);
    const bounds = list.split(',').map((v) => v.trim());
    if (bounds.some((v) => !/^[1-9][0-9]*$/.test(v)))
      throw new BadRequestError(`--shape-buckets: bounds of '${dim}' must be positive integers, got '${list}'`);
    out[dim] = [...new Set(bounds.map(Number))].sort((a, b) => a - b);
  }
  return out;
}
