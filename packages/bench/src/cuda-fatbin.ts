// Shrinks what onnxruntime's CUDA provider costs to carry to one GPU: the device code of a CUDA
// shared library sits in its `.nv_fatbin` section as fat binaries, one entry per GPU architecture
// (sm_75, sm_80, sm_86, sm_89, sm_90, sm_120 in onnxruntime-gpu 1.30). The CUDA driver loads the
// entry of the GPU's own architecture (or JIT-compiles a PTX entry); the others are never read.
// `pruneFatbins` zeroes the machine-code payloads of the other architectures in place — headers,
// sizes and offsets stay, so the library is byte-for-byte the same length and links as before —
// and the zeroes compress to nothing: onnxruntime-gpu 1.30's 272 MB provider xz-compresses to
// 50 MB for sm_90 alone. PTX entries are kept whatever their architecture.
//
// Fat binary layout (as CUDA's fatbinary tools write it, little-endian):
//   container: u32 magic 0xBA55ED50, u16 version, u16 header size, u64 size of the entries after it
//   entry:     u16 kind (1 PTX, 2 ELF machine code), u16 version, u32 header size, u64 payload size,
//              ..., u32 architecture at byte 28 (90 = sm_90), ...; the payload follows the header.

export const FATBIN_MAGIC = 0xba55ed50;
export const FATBIN_KIND_PTX = 1;
export const FATBIN_KIND_ELF = 2;

export interface ElfSection {
  name: string;
  offset: number;
  size: number;
}

/** The sections of a 64-bit little-endian ELF file (name, file offset, size). */
export function elfSections(buf: Uint8Array): ElfSection[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.byteLength < 64 || v.getUint32(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  const shstrndx = v.getUint16(0x3e, true);
  if (shoff + shnum * shentsize > buf.byteLength || shstrndx >= shnum) throw new Error('ELF section table out of bounds');
  const raw = Array.from({ length: shnum }, (_, i) => {
    const at = shoff + i * shentsize;
    return { nameAt: v.getUint32(at, true), offset: Number(v.getBigUint64(at + 24, true)), size: Number(v.getBigUint64(at + 32, true)) };
  });
  const strtab = raw[shstrndx]!;
  const name = (at: number) => {
    let end = strtab.offset + at;
    while (end < buf.byteLength && buf[end] !== 0) end++;
    return Buffer.from(buf.subarray(strtab.offset + at, end)).toString('latin1');
  };
  return raw.map((s) => ({ name: name(s.nameAt), offset: s.offset, size: s.size }));
}

export interface FatbinEntry {
  kind: number;
  arch: number;
  /** File offset of the payload. */
  payloadAt: number;
  payloadBytes: number;
}

/** Every entry of every fat binary container in `section` of `buf`. */
export function fatbinEntries(buf: Uint8Array, section: ElfSection): FatbinEntry[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const entries: FatbinEntry[] = [];
  const end = section.offset + section.size;
  let pos = section.offset;
  while (pos + 16 <= end) {
    if (v.getUint32(pos, true) !== FATBIN_MAGIC) {
      pos += 8; // containers are 8-byte aligned; padding between them
      continue;
    }
    const headerBytes = v.getUint16(pos + 6, true);
    const entriesBytes = Number(v.getBigUint64(pos + 8, true));
    const containerEnd = pos + headerBytes + entriesBytes;
    if (containerEnd > end) throw new Error(`fat binary at ${pos} runs past its section`);
    let e = pos + headerBytes;
    while (e + 32 <= containerEnd) {
      const entryHeader = v.getUint32(e + 4, true);
      const payloadBytes = Number(v.getBigUint64(e + 8, true));
      if (entryHeader < 32 || e + entryHeader + payloadBytes > containerEnd) break;
      entries.push({ kind: v.getUint16(e, true), arch: v.getUint32(e + 28, true), payloadAt: e + entryHeader, payloadBytes });
      e += entryHeader + payloadBytes;
    }
    pos = containerEnd;
  }
  return entries;
}

export interface PruneResult {
  entries: number;
  keptBytes: number;
  zeroedBytes: number;
  /** Machine-code bytes per architecture before pruning. */
  byArch: Record<string, number>;
}

/** Zeroes, in place, the machine-code payloads of `buf`'s fat binaries for architectures not in `keep`. */
export function pruneFatbins(buf: Uint8Array, keep: readonly number[]): PruneResult {
  const sections = elfSections(buf).filter((s) => s.name === '.nv_fatbin');
  if (sections.length === 0) throw new Error('no .nv_fatbin section: not a CUDA library');
  const result: PruneResult = { entries: 0, keptBytes: 0, zeroedBytes: 0, byArch: {} };
  for (const s of sections)
    for (const e of fatbinEntries(buf, s)) {
      result.entries++;
      const key = `${e.kind === FATBIN_KIND_PTX ? 'compute' : 'sm'}_${e.arch}`;
      result.byArch[key] = (result.byArch[key] ?? 0) + e.payloadBytes;
      if (e.kind === FATBIN_KIND_ELF && !keep.includes(e.arch)) {
        buf.fill(0, e.payloadAt, e.payloadAt + e.payloadBytes);
        result.zeroedBytes += e.payloadBytes;
      } else result.keptBytes += e.payloadBytes;
    }
  if (result.keptBytes === 0 || !Object.keys(result.byArch).some((k) => keep.some((a) => k === `sm_${a}` || k.startsWith('compute_'))))
    throw new Error(`no device code for sm_${keep.join(', sm_')} in this library (it has ${Object.keys(result.byArch).join(', ')})`);
  return result;
}
