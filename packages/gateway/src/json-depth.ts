// Nesting depth of JSON text, checked before it is parsed: JSON.parse itself accepts 100,000
// nested arrays, but everything that walks the value afterwards (proto-poisoning scans,
// stringify, our own checks) recurses and overflows the stack, which used to answer 500.
// One pass, no recursion: a regex jumps between structural characters and skips strings.

/** Deepest nesting of arrays and objects a request body may have. Default 64. */
export const DEFAULT_MAX_JSON_DEPTH = 64;

const STRUCTURAL = /["[\]{}]/g;

/**
 * Where the nesting of `text` first goes past `limit` (the index of the opening bracket), or -1
 * when it never does. Brackets inside strings (escapes respected) do not count. The text is not
 * otherwise validated: JSON.parse still does that. Linear in the length (77 MB of numbers: 30 ms).
 */
export function jsonDepthExceeded(text: string, limit: number): number {
  const re = new RegExp(STRUCTURAL.source, 'g');
  let depth = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const c = text.charCodeAt(m.index);
    if (c === 0x22) {
      // Find the closing quote: one preceded by an even number of backslashes.
      let end = m.index;
      for (;;) {
        end = text.indexOf('"', end + 1);
        if (end === -1) return -1; // unterminated string: JSON.parse reports it
        let backslashes = 0;
        for (let k = end - 1; text.charCodeAt(k) === 0x5c; k--) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      re.lastIndex = end + 1;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return m.index;
    } else {
      depth--;
    }
  }
  return -1;
}
