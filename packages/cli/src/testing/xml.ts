// Test helper: a strict little XML parser (elements, attributes, text, comments, the five
// predefined entities and numeric references) that throws on anything not well-formed, and
// returns the tree so tests query the SVG the way a browser would see it, not with regexes.

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_:][A-Za-z0-9_.:-]*/;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decode(raw: string, at: number): string {
  if (raw.includes('<')) throw new Error(`'<' in character data or an attribute near offset ${at}`);
  return raw.replace(/&([^;]*);?/g, (m, body: string) => {
    if (!m.endsWith(';')) throw new Error(`unterminated entity reference near offset ${at}`);
    if (body in ENTITIES) return ENTITIES[body]!;
    const num = /^#(x[0-9a-fA-F]+|[0-9]+)$/.exec(body);
    if (num) return String.fromCodePoint(body[1] === 'x' ? parseInt(body.slice(2), 16) : Number(body.slice(1)));
    throw new Error(`unknown entity &${body}; near offset ${at}`);
  });
}

/** Parses a whole document (an optional XML declaration, one root element); throws with the offset of the first problem. */
export function parseXml(src: string): XmlElement {
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  const skipSpace = () => {
    while (i < src.length && /\s/.test(src[i]!)) i++;
  };
  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) throw new Error('unterminated XML declaration');
    i = end + 2;
  }
  while (i < src.length) {
    if (src.startsWith('<!--', i)) {
      const end = src.indexOf('-->', i + 4);
      if (end < 0) throw new Error(`unterminated comment at ${i}`);
      if (src.slice(i + 4, end).includes('--')) throw new Error(`'--' inside a comment at ${i}`);
      i = end + 3;
    } else if (src.startsWith('</', i)) {
      const m = NAME.exec(src.slice(i + 2));
      const open = stack.pop();
      if (!m || !open || open.name !== m[0]) throw new Error(`closing tag </${m?.[0]}> does not match <${open?.name}> at ${i}`);
      i += 2 + m[0].length;
      skipSpace();
      if (src[i] !== '>') throw new Error(`expected '>' at ${i}`);
      i++;
    } else if (src[i] === '<') {
      const m = NAME.exec(src.slice(i + 1));
      if (!m) throw new Error(`bad element name at ${i}`);
      const el: XmlElement = { name: m[0], attrs: {}, children: [], text: '' };
      i += 1 + m[0].length;
      for (;;) {
        const before = i;
        skipSpace();
        if (src.startsWith('/>', i) || src[i] === '>') break;
        if (i === before) throw new Error(`expected whitespace before an attribute at ${i}`);
        const a = NAME.exec(src.slice(i));
        if (!a) throw new Error(`bad attribute name at ${i}`);
        i += a[0].length;
        skipSpace();
        if (src[i] !== '=') throw new Error(`expected '=' after ${a[0]} at ${i}`);
        i++;
        skipSpace();
        const q = src[i];
        if (q !== '"' && q !== "'") throw new Error(`unquoted attribute ${a[0]} at ${i}`);
        const end = src.indexOf(q, i + 1);
        if (end < 0) throw new Error(`unterminated attribute ${a[0]} at ${i}`);
        if (a[0] in el.attrs) throw new Error(`duplicate attribute ${a[0]} at ${i}`);
        el.attrs[a[0]] = decode(src.slice(i + 1, end), i);
        i = end + 1;
      }
      const parent = stack[stack.length - 1];
      if (parent) parent.children.push(el);
      else if (root) throw new Error(`a second root element <${el.name}> at ${i}`);
      else root = el;
      if (src.startsWith('/>', i)) i += 2;
      else {
        i++;
        stack.push(el);
      }
    } else {
      const end = src.indexOf('<', i);
      const raw = src.slice(i, end < 0 ? src.length : end);
      const parent = stack[stack.length - 1];
      if (parent) parent.text += decode(raw, i);
      else if (raw.trim()) throw new Error(`text outside the root element at ${i}`);
      i = end < 0 ? src.length : end;
    }
  }
  if (stack.length) throw new Error(`unclosed <${stack[stack.length - 1]!.name}>`);
  if (!root) throw new Error('no root element');
  return root;
}

/** Every element under (and including) `el` for which `pred` holds, in document order. */
export function findAll(el: XmlElement, pred: (e: XmlElement) => boolean): XmlElement[] {
  return [...(pred(el) ? [el] : []), ...el.children.flatMap((c) => findAll(c, pred))];
}

/** Whether the element's class attribute lists `cls`. */
export const hasClass = (el: XmlElement, cls: string): boolean => (el.attrs.class ?? '').split(/\s+/).includes(cls);
