import { elfSections, FATBIN_KIND_ELF, FATBIN_KIND_PTX, FATBIN_MAGIC, fatbinEntries, pruneFatbins } from './cuda-fatbin.js';

/** A fat binary container with one entry per [kind, arch, payload byte]. */
function fatbin(entries: Array<[kind: number, arch: number, fill: number, bytes: number]>): Buffer {
  const parts = entries.map(([kind, arch, fill, bytes]) => {
    const h = Buffer.alloc(64);
    h.writeUInt16LE(kind, 0);
    h.writeUInt16LE(0x0101, 2);
    h.writeUInt32LE(64, 4);
    h.writeBigUInt64LE(BigInt(bytes), 8);
    h.writeUInt32LE(arch, 28);
    return Buffer.concat([h, Buffer.alloc(bytes, fill)]);
  });
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(16);
  head.writeUInt32LE(FATBIN_MAGIC, 0);
  head.writeUInt16LE(1, 4);
  head.writeUInt16LE(16, 6);
  head.writeBigUInt64LE(BigInt(body.length), 8);
  return Buffer.concat([head, body]);
}

/** A minimal 64-bit little-endian ELF whose sections are `sections` (plus the name table). */
function elf(sections: Array<[name: string, data: Buffer]>): Buffer {
  const names = ['', ...sections.map(([n]) => n), '.shstrtab'];
  const strtab = Buffer.from(names.join('\0') + '\0', 'latin1');
  const nameAt = (i: number) => Buffer.from(names.slice(0, i).join('\0') + (i ? '\0' : ''), 'latin1').length;
  const blobs = [...sections.map(([, d]) => d), strtab];
  let at = 64;
  const offsets = blobs.map((b) => {
    const o = at;
    at += b.length + ((8 - (b.length % 8)) % 8);
    return o;
  });
  const shoff = at;
  const out = Buffer.alloc(shoff + 64 * (blobs.length + 1));
  out.writeUInt32BE(0x7f454c46, 0);
  out[4] = 2;
  out[5] = 1;
  out.writeBigUInt64LE(BigInt(shoff), 0x28);
  out.writeUInt16LE(64, 0x3a);
  out.writeUInt16LE(blobs.length + 1, 0x3c);
  out.writeUInt16LE(blobs.length, 0x3e);
  blobs.forEach((b, i) => {
    b.copy(out, offsets[i]);
    const sh = shoff + 64 * (i + 1);
    out.writeUInt32LE(nameAt(i + 1), sh);
    out.writeBigUInt64LE(BigInt(offsets[i]!), sh + 24);
    out.writeBigUInt64LE(BigInt(b.length), sh + 32);
  });
  return out;
}

describe('pruneFatbins', () => {
  const lib = () =>
    elf([
      ['.text', Buffer.alloc(40, 0x90)],
      [
        '.nv_fatbin',
        Buffer.concat([
          fatbin([
            [FATBIN_KIND_ELF, 80, 0x80, 96],
            [FATBIN_KIND_ELF, 90, 0x90, 128],
            [FATBIN_KIND_PTX, 80, 0x70, 32],
          ]),
          Buffer.alloc(8), // padding between containers
          fatbin([[FATBIN_KIND_ELF, 120, 0x12, 48]]),
        ]),
      ],
    ]);

  test('reads the sections and every entry of every container', () => {
    const buf = lib();
    const secs = elfSections(buf);
    expect(secs.map((s) => s.name)).toEqual(['', '.text', '.nv_fatbin', '.shstrtab']);
    const entries = fatbinEntries(buf, secs[2]!);
    expect(entries.map((e) => [e.kind, e.arch, e.payloadBytes])).toEqual([
      [2, 80, 96],
      [2, 90, 128],
      [1, 80, 32],
      [2, 120, 48],
    ]);
  });

  test('zeroes machine code of other architectures only; PTX, the kept arch and the rest of the file stay', () => {
    const before = lib();
    const buf = Buffer.from(before);
    const r = pruneFatbins(buf, [90]);
    expect(r).toEqual({ entries: 4, keptBytes: 160, zeroedBytes: 144, byArch: { sm_80: 96, sm_90: 128, compute_80: 32, sm_120: 48 } });
    expect(buf.length).toBe(before.length);
    const entries = fatbinEntries(buf, elfSections(buf)[2]!);
    const payload = (i: number) => buf.subarray(entries[i]!.payloadAt, entries[i]!.payloadAt + entries[i]!.payloadBytes);
    expect(payload(0).every((b) => b === 0)).toBe(true);
    expect(payload(1).every((b) => b === 0x90)).toBe(true);
    expect(payload(2).every((b) => b === 0x70)).toBe(true);
    expect(payload(3).every((b) => b === 0)).toBe(true);
    // Headers untouched: only payload bytes changed.
    let changed = 0;
    for (let i = 0; i < buf.length; i++) if (buf[i] !== before[i]) changed++;
    expect(changed).toBe(144);
  });

  test('refuses what is not a CUDA library, or has nothing for the GPU', () => {
    expect(() => pruneFatbins(Buffer.from('not an elf at all, not at all, not at all, not at all, not at all'), [90])).toThrow(
      /not an ELF/,
    );
    expect(() => pruneFatbins(elf([['.text', Buffer.alloc(8)]]), [90])).toThrow(/no .nv_fatbin section/);
    const noPtx = elf([['.nv_fatbin', fatbin([[FATBIN_KIND_ELF, 80, 1, 16]])]]);
    expect(() => pruneFatbins(noPtx, [90])).toThrow(/no device code for sm_90 .*sm_80/);
  });
});
