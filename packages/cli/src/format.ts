// Small helpers for people-facing output and input: sizes, tables, errors with exit codes.
import { ErrorCode, FlotillaError, SessionHostChoice, toFlotillaError } from '@flotilla/protocol';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 1024,
  kib: 1024,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
};

/** `512MiB`, `2GiB`, `1.5GB`, `1048576` → bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new FlotillaError(ErrorCode.BAD_REQUEST, `invalid size '${text}' (use e.g. 512MiB, 2GiB, 1.5GB or bytes)`);
  return Math.floor(Number(m[1]) * unit);
}

/**
 * A share of a device: `0.25`, `1/4` or `25%` → 0.25, within (0, 1]. `1/N` is how the docs write
 * "N workers share one GPU" (deploy/k8s overlays/gpu-shared), so it reads as written there.
 */
export function parseFraction(text: string): number {
  const m = /^\s*(?:(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)|(\d*\.?\d+)\s*(%?))\s*$/.exec(text);
  const value = !m ? NaN : m[1] !== undefined ? Number(m[1]) / Number(m[2]) : Number(m[3]) / (m[4] ? 100 : 1);
  if (!(value > 0 && value <= 1))
    throw new FlotillaError(ErrorCode.BAD_REQUEST, `invalid share '${text}' (use a fraction in (0, 1]: 0.25, 1/4 or 25%)`);
  return value;
}

/** `--session-host`: thread, event-loop or auto (protocol SessionHostChoice). */
export function parseSessionHost(text: string): SessionHostChoice {
  const r = SessionHostChoice.safeParse(text.trim());
  if (!r.success) throw new FlotillaError(ErrorCode.BAD_REQUEST, `invalid session host '${text}' (use thread, event-loop or auto)`);
  return r.data;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (c ?? '').padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Process exit code per error code (documented in the README); 1 for anything else. */
export const EXIT_CODES: Record<string, number> = {
  [ErrorCode.BAD_REQUEST]: 2,
  [ErrorCode.UNKNOWN_MODEL]: 3,
  [ErrorCode.INPUT_MISMATCH]: 4,
  [ErrorCode.UNAVAILABLE]: 5,
  [ErrorCode.DEADLINE_EXCEEDED]: 6,
  [ErrorCode.MODEL_LOAD_FAILED]: 7,
  [ErrorCode.NO_CAPACITY]: 8,
  [ErrorCode.PAYLOAD_TOO_LARGE]: 9,
  [ErrorCode.OVERLOADED]: 10,
  [ErrorCode.DECODE_ERROR]: 11,
  [ErrorCode.FORBIDDEN]: 12,
};

/** Prints the error (as JSON on stdout too when asked) and returns the exit code. */
export function reportError(err: unknown, json: boolean): number {
  const e = toFlotillaError(err);
  process.stderr.write(`error ${e.code}: ${e.message}\n`);
  if (json) process.stdout.write(JSON.stringify({ error: e.toWire() }) + '\n');
  return EXIT_CODES[e.code] ?? 1;
}
