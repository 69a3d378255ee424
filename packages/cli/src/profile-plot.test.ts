import type { ModelProfile, ProfileRow } from '@flotilla/protocol';
import { batchTicks, compactNumber, niceTicks, profilePlotSvg } from './profile-plot.js';
import { findAll, hasClass, parseXml, type XmlElement } from './testing/xml.js';

/** A profile as the profiler stores it: rows for `batches`, throughput rising and then flattening. */
function profile(batches: number[], chosen: number, extra: Partial<ModelProfile> = {}): ModelProfile {
  const rows: ProfileRow[] = batches.map((b, i) => ({
    batch: b,
    runs: 20 + i,
    p50Ms: 0.4 * b ** 0.8,
    p99Ms: 0.6 * b ** 0.85 + i * 0.01,
    itemsPerSec: Math.round((1000 * b) / (1 + b / 16)),
    peakBytes: 1e6 * b,
  }));
  return {
    v: 1,
    digest: 'sha256:ab',
    deviceClass: 'cpu:AMD EPYC x2',
    ortVersion: '1.30.0',
    createdAt: 1_764_400_000_000,
    latencySloMs: 50,
    budgetMs: 3000,
    tookMs: 812,
    rows,
    stoppedBecause: 'throughput stopped improving',
    chosen: { maxBatchSize: chosen, maxQueueDelayMs: 1.2, reason: `batch ${chosen}: best items/s within the p99 objective` },
    memory: { sessionBytes: 5e6, peakBytes: 9e6, replicaBytes: 9e6 },
    ...extra,
  };
}

const points = (svg: XmlElement, metric: string) =>
  findAll(svg, (e) => e.name === 'circle' && hasClass(e, 'point') && e.attrs['data-metric'] === metric);

describe('profile plot (SVG)', () => {
  it('parses as XML, with a title and description for assistive technology', () => {
    const svg = parseXml(profilePlotSvg('mlp', [profile([1, 2, 4, 8, 16, 32, 64], 16)]));
    expect(svg.name).toBe('svg');
    expect(svg.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    expect(svg.attrs.role).toBe('img');
    const title = svg.children.find((c) => c.name === 'title')!;
    const desc = svg.children.find((c) => c.name === 'desc')!;
    expect(svg.attrs['aria-labelledby']).toBe(`${title.attrs.id} ${desc.attrs.id}`);
    expect(title.text).toBe('mlp: items/s and p99 latency against batch size');
    // The description carries the data: every batch with its items/s.
    for (const b of [1, 2, 4, 8, 16, 32, 64]) expect(desc.text).toContain(`batch ${b}: `);
    expect(desc.text).toContain('Chosen batch 16');
  });

  it('draws one point per profiled batch size in each panel, and marks the chosen one', () => {
    const batches = [1, 2, 4, 8, 16, 32];
    const svg = parseXml(profilePlotSvg('mlp', [profile(batches, 8)]));
    for (const metric of ['items', 'p99']) {
      const pts = points(svg, metric);
      expect(pts.map((p) => Number(p.attrs['data-batch']))).toEqual(batches);
      const chosen = pts.filter((p) => hasClass(p, 'chosen'));
      expect(chosen.map((p) => p.attrs['data-batch'])).toEqual(['8']);
      expect(chosen[0]!.children[0]!.text).toContain('(chosen)');
    }
    expect(findAll(svg, (e) => hasClass(e, 'chosen-ring'))).toHaveLength(2);
    expect(findAll(svg, (e) => hasClass(e, 'chosen-label')).map((e) => e.text)).toEqual(['chosen 8']);
  });

  it('puts higher throughput higher, and spaces batch sizes by their log', () => {
    const svg = parseXml(profilePlotSvg('mlp', [profile([1, 2, 4, 8], 4)]));
    const pts = points(svg, 'items');
    const ys = pts.map((p) => Number(p.attrs.cy));
    const xs = pts.map((p) => Number(p.attrs.cx));
    // items/s rises with the batch in the fixture: SVG y falls.
    for (let i = 1; i < ys.length; i++) expect(ys[i]).toBeLessThan(ys[i - 1]!);
    // 1→2, 2→4, 4→8: equal steps on a log2 axis.
    const steps = xs.slice(1).map((x, i) => x - xs[i]!);
    for (const s of steps) expect(s).toBeCloseTo(steps[0]!, 0);
  });

  it('draws one series per shape profile, each with its own points and legend entry', () => {
    const a = profile([1, 2, 4, 8, 16, 32, 64], 64, { shape: { x: [3, 48, 160] } });
    const b = profile([1, 2, 4], 4, { shape: { x: [3, 48, 320] } });
    const svg = parseXml(profilePlotSvg('ocr', [a, b]));
    const series = findAll(svg, (e) => hasClass(e, 'series'));
    expect(series).toHaveLength(4); // two series × two panels
    const count = (i: string, metric: string) =>
      findAll(svg, (e) => hasClass(e, 'point') && e.attrs['data-metric'] === metric && seriesOf(svg, e) === i).length;
    expect(count('0', 'items')).toBe(7);
    expect(count('1', 'items')).toBe(3);
    expect(count('1', 'p99')).toBe(3);
    const legend = findAll(svg, (e) => hasClass(e, 'legend'))[0]!;
    const texts = findAll(legend, (e) => e.name === 'text').map((e) => e.text);
    expect(texts).toEqual(['cpu:AMD EPYC x2 at x [*,3,48,160]: chosen batch 64', 'cpu:AMD EPYC x2 at x [*,3,48,320]: chosen batch 4']);
    // Different colours per series.
    const fills = series.slice(0, 2).map((s) => s.children.find((c) => c.name === 'circle')!.attrs.fill);
    expect(new Set(fills).size).toBe(2);
  });

  it('has axes with ticks and labels', () => {
    const svg = parseXml(profilePlotSvg('mlp', [profile([1, 2, 4, 8, 16], 8)]));
    const xTicks = findAll(svg, (e) => hasClass(e, 'x-tick')).map((e) => e.text);
    expect(xTicks).toEqual(['1', '2', '4', '8', '16', '1', '2', '4', '8', '16']);
    const texts = findAll(svg, (e) => e.name === 'text').map((e) => e.text);
    expect(texts).toEqual(expect.arrayContaining(['Throughput (items/s)', 'p99 latency per batch (ms)']));
    expect(texts.filter((t) => t.startsWith('batch size'))).toHaveLength(2);
    const yTicks = findAll(svg, (e) => hasClass(e, 'y-tick')).map((e) => e.text);
    expect(yTicks[0]).toBe('0');
    expect(yTicks.length).toBeGreaterThanOrEqual(6);
  });

  it('marks a chosen batch that was not measured with a line, and lists a skipped profile', () => {
    const skipped = profile([], 1, { skipped: 'no dynamic batch axis' });
    const svg = parseXml(profilePlotSvg('fixed', [skipped]));
    expect(points(svg, 'items')).toHaveLength(0);
    expect(findAll(svg, (e) => hasClass(e, 'chosen-line')).map((e) => e.attrs['data-batch'])).toEqual(['1', '1']);
    expect(findAll(svg, (e) => e.name === 'desc')[0]!.text).toContain('no batch sizes measured (no dynamic batch axis)');
  });

  it('escapes text that would break the XML', () => {
    const p = profile([1, 2], 2, { deviceClass: 'gpu:<"A&B">', chosen: { maxBatchSize: 2, maxQueueDelayMs: 0, reason: "it's <best>" } });
    const svg = parseXml(profilePlotSvg('m&m', [p]));
    expect(svg.children.find((c) => c.name === 'title')!.text).toBe('m&m: items/s and p99 latency against batch size');
    expect(svg.children.find((c) => c.name === 'desc')!.text).toContain(`gpu:<"A&B">`);
  });

  it('draws the p99 objective only where it is near the data', () => {
    const near = parseXml(profilePlotSvg('m', [profile([1, 2, 4, 8, 16, 32, 64], 16, { latencySloMs: 20 })]));
    expect(findAll(near, (e) => hasClass(e, 'objective'))).toHaveLength(1);
    const far = parseXml(profilePlotSvg('m', [profile([1, 2], 2, { latencySloMs: 500 })]));
    expect(findAll(far, (e) => hasClass(e, 'objective'))).toHaveLength(0);
  });

  it.each([
    [0.123456, '0.123'],
    [950, '950'],
    [1234, '1.23k'],
    [5000, '5k'],
    [14_812_345, '14.8M'],
    [31_151, '31.2k'],
    [0, '0'],
  ])('writes %p as %p', (v, text) => expect(compactNumber(v)).toBe(text));

  it('picks round ticks that cover the data', () => {
    expect(niceTicks(9.3)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(31_151)).toEqual([0, 10_000, 20_000, 30_000, 40_000]);
    expect(niceTicks(0.37)).toEqual([0, 0.1, 0.2, 0.3, 0.4]);
    expect(niceTicks(0)).toEqual([0, 1]);
    expect(batchTicks(1, 64)).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(batchTicks(3, 48)).toEqual([2, 4, 8, 16, 32, 64]);
  });
});

/** The data-series of the group holding `el`. */
function seriesOf(root: XmlElement, el: XmlElement): string | undefined {
  return findAll(root, (e) => hasClass(e, 'series') && e.children.includes(el))[0]?.attrs['data-series'];
}

describe('the test XML parser', () => {
  it.each([
    ['<a><b></a></b>', 'does not match'],
    ['<a x="1" x="2"/>', 'duplicate'],
    ['<a x=1/>', 'unquoted'],
    ['<a>&nbsp;</a>', 'unknown entity'],
    ['<a>1 < 2</a>', 'bad element name'],
    ['<a/><b/>', 'second root'],
    ['<a>', 'unclosed'],
  ])('refuses %p', (src, why) => expect(() => parseXml(src)).toThrow(why));
});
