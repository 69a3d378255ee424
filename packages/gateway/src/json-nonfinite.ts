// NaN and ±Infinity as Triton's JSON has them: bare `NaN`, `Infinity`, `-Infinity` tokens (what
// Python's json.dumps, and so tritonclient, writes for a float tensor holding them). JSON lacks
// them, so the text is rewritten before parsing: each bare token outside strings becomes the
// string "NaN", "Infinity" or "-Infinity", which FP inputs accept. Pure, one pass, no recursion.

const TOKENS = /"|-?Infinity|NaN/g;

/** `text` with bare NaN/Infinity/-Infinity quoted; the same string when it has none. */
export function quoteNonFinite(text: string): string {
  if (!text.includes('NaN') && !text.includes('Infinity')) return text;
  const re = new RegExp(TOKENS.source, 'g');
  const parts: string[] = [];
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    if (m[0] === '"') {
      // Skip the string: to the next quote preceded by an even number of backslashes.
      let end = m.index;
      for (;;) {
        end = text.indexOf('"', end + 1);
        if (end === -1) return text; // unterminated string: JSON.parse reports it
        let backslashes = 0;
        for (let k = end - 1; text.charCodeAt(k) === 0x5c; k--) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      re.lastIndex = end + 1;
    } else {
      parts.push(text.slice(last, m.index), `"${m[0]}"`);
      last = m.index + m[0].length;
    }
  }
  if (last === 0) return text;
  parts.push(text.slice(last));
  return parts.join('');
}
