// `flotilla profile MODEL --plot FILE.svg`: a model's stored profiles drawn as an SVG without a
// browser: items/s (top) and p99 latency (bottom) against batch size on a log2 axis, one series
// per device class and input shape, the chosen batch ringed. Pure: profiles in, SVG text out.
import type { ModelProfile } from '@flotilla/protocol';

/** Width of the plot, px. */
export const DEFAULT_PLOT_WIDTH = 820;
/** Height of each of the two panels (items/s, p99), px. */
export const DEFAULT_PANEL_HEIGHT = 220;

export interface ProfilePlotOptions {
  /** Width of the SVG, px (default 820). */
  width?: number;
  /** Height of each panel, px (default 220); the SVG's height follows from it and the legend. */
  panelHeight?: number;
}

/** Okabe–Ito colours (distinguishable with the common colour-vision deficiencies); dashes tell series apart in grey too. */
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];
const DASHES = ['', '6 3', '2 3', '8 3 2 3'];

const MARGIN = { left: 84, right: 28, top: 64 };
/** Vertical space under a panel: tick labels and the axis title. */
const PANEL_GAP = 62;
const LEGEND_ROW = 20;

/** One profile as the plot draws it. */
export interface PlotSeries {
  label: string;
  colour: string;
  dash: string;
  rows: ModelProfile['rows'];
  chosenBatch: number;
  latencySloMs: number;
  reason: string;
  skipped?: string;
}

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

/** 3 significant digits at most, thousands as k and millions as M: 950, 1.23k, 14.8M, 0.125. */
export function compactNumber(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1000) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a === 0) return '0';
  return `${+v.toPrecision(3)}`;
}

/** Ticks 0, step, 2·step, … covering `max`, with a step of 1, 2 or 5 × 10^k (about `count` ticks). */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let i = 0; ; i++) {
    const t = +(i * step).toPrecision(12);
    ticks.push(t);
    if (t >= max) break;
  }
  return ticks;
}

/** Powers of two from the smallest to the largest batch (both included, rounded out). */
export function batchTicks(min: number, max: number): number[] {
  const ticks: number[] = [];
  for (let b = 2 ** Math.floor(Math.log2(min)); b <= 2 ** Math.ceil(Math.log2(max)); b *= 2) ticks.push(b);
  return ticks;
}

/** A per-shape profile's shape for people: `x [*,3,48,320]` (the batch axis as `*`). */
function shapeText(shape: Record<string, number[]>): string {
  return Object.entries(shape)
    .map(([name, dims]) => `${name} [*,${dims.join(',')}]`)
    .join(', ');
}

/** The series a plot draws: one per profile, in the order given, labelled by device class and (where set) shape. */
export function plotSeries(profiles: readonly ModelProfile[]): PlotSeries[] {
  return profiles.map((p, i) => ({
    label: `${p.deviceClass}${p.shape ? ` at ${shapeText(p.shape)}` : ''}`,
    colour: COLOURS[i % COLOURS.length]!,
    dash: DASHES[i % DASHES.length]!,
    rows: [...p.rows].sort((a, b) => a.batch - b.batch),
    chosenBatch: p.chosen.maxBatchSize,
    latencySloMs: p.latencySloMs,
    reason: p.chosen.reason,
    skipped: p.skipped,
  }));
}

interface Panel {
  metric: 'items' | 'p99';
  title: string;
  unit: string;
  top: number;
  value: (r: ModelProfile['rows'][number]) => number;
}

/** The text alternative: every measured point in words (a screen reader reads the data, not the picture). */
export function plotDescription(model: string, series: readonly PlotSeries[]): string {
  const parts = series.map((s) => {
    if (s.rows.length === 0)
      return `${s.label}: no batch sizes measured${s.skipped ? ` (${s.skipped})` : ''}; batch ${s.chosenBatch} used.`;
    const rows = s.rows.map((r) => `batch ${r.batch}: ${compactNumber(r.itemsPerSec)} items/s, p99 ${compactNumber(r.p99Ms)} ms`);
    return `${s.label}: ${rows.join('; ')}. Chosen batch ${s.chosenBatch} (${s.reason}); p99 objective ${compactNumber(s.latencySloMs)} ms.`;
  });
  return `Throughput in items per second and p99 latency in milliseconds of model ${model} against batch size. ${parts.join(' ')}`;
}

/** The plot of a model's profiles, as SVG text. `profiles` with no rows still appear in the legend and description. */
export function profilePlotSvg(model: string, profiles: readonly ModelProfile[], options: ProfilePlotOptions = {}): string {
  const width = options.width ?? DEFAULT_PLOT_WIDTH;
  const panelH = options.panelHeight ?? DEFAULT_PANEL_HEIGHT;
  const series = plotSeries(profiles);
  const plotW = width - MARGIN.left - MARGIN.right;
  const legendTop = MARGIN.top + 2 * (panelH + PANEL_GAP) + 8;
  const height = legendTop + series.length * LEGEND_ROW + 12;

  // x: log2 of the batch size over every measured and chosen batch, padded a quarter step each side.
  const batches = series.flatMap((s) => [...s.rows.map((r) => r.batch), s.chosenBatch]);
  const bMin = Math.min(...batches, Infinity);
  const bMax = Math.max(...batches, -Infinity);
  const lo = (Number.isFinite(bMin) ? Math.log2(bMin) : 0) - 0.25;
  const hi = (Number.isFinite(bMax) ? Math.log2(bMax) : 0) + 0.25;
  const x = (batch: number): number => MARGIN.left + ((Math.log2(batch) - lo) / (hi - lo)) * plotW;
  const xTicks = Number.isFinite(bMin) ? batchTicks(bMin, bMax).filter((b) => Math.log2(b) >= lo && Math.log2(b) <= hi) : [];

  const panels: Panel[] = [
    { metric: 'items', title: 'Throughput', unit: 'items/s', top: MARGIN.top, value: (r) => r.itemsPerSec },
    { metric: 'p99', title: 'p99 latency per batch', unit: 'ms', top: MARGIN.top + panelH + PANEL_GAP, value: (r) => r.p99Ms },
  ];

  const out: string[] = [];
  const title = `${model}: items/s and p99 latency against batch size`;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="plot-title plot-desc" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
    `<title id="plot-title">${esc(title)}</title>`,
    `<desc id="plot-desc">${esc(plotDescription(model, series))}</desc>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${MARGIN.left}" y="26" font-size="17" font-weight="600" fill="#111111">${esc(title)}</text>`,
    `<text x="${MARGIN.left}" y="46" fill="#444444">${esc(subtitle(series))}</text>`,
  );

  for (const panel of panels) {
    const values = series.flatMap((s) => s.rows.map(panel.value));
    const slos = panel.metric === 'p99' ? [...new Set(series.map((s) => s.latencySloMs))] : [];
    const dataMax = Math.max(0, ...values);
    // The objective line widens the axis only when it is near the data (else it would flatten it).
    const shownSlos = slos.filter((v) => v <= Math.max(dataMax, 1e-9) * 2);
    const yTicks = niceTicks(Math.max(dataMax, ...shownSlos) * 1.05 || 1);
    const yMax = yTicks[yTicks.length - 1]!;
    const bottom = panel.top + panelH;
    const y = (v: number): number => bottom - (v / yMax) * panelH;
    out.push(`<g class="panel" data-metric="${panel.metric}">`);
    for (const t of yTicks) {
      out.push(
        `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${f(y(t))}" y2="${f(y(t))}" stroke="${t === 0 ? '#333333' : '#e2e2e2'}"/>`,
        `<text class="y-tick" x="${MARGIN.left - 8}" y="${f(y(t) + 4)}" text-anchor="end" fill="#333333">${esc(compactNumber(t))}</text>`,
      );
    }
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left}" y1="${panel.top}" y2="${bottom}" stroke="#333333"/>`);
    for (const b of xTicks) {
      out.push(
        `<line x1="${f(x(b))}" x2="${f(x(b))}" y1="${bottom}" y2="${bottom + 5}" stroke="#333333"/>`,
        `<text class="x-tick" x="${f(x(b))}" y="${bottom + 18}" text-anchor="middle" fill="#333333">${b}</text>`,
      );
    }
    out.push(
      `<text x="${MARGIN.left + plotW / 2}" y="${bottom + 38}" text-anchor="middle" fill="#111111">batch size (items per run, log scale)</text>`,
      `<text transform="translate(20 ${f(panel.top + panelH / 2)}) rotate(-90)" text-anchor="middle" fill="#111111">${esc(`${panel.title} (${panel.unit})`)}</text>`,
    );
    for (const slo of shownSlos) {
      out.push(
        `<line class="objective" x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${f(y(slo))}" y2="${f(y(slo))}" stroke="#B00020" stroke-dasharray="4 4"/>`,
        // At the left: batch 1's p99 sits far below the objective, where the label cannot hide a point.
        `<text x="${MARGIN.left + 6}" y="${f(y(slo) - 5)}" fill="#B00020">p99 objective ${esc(compactNumber(slo))} ms</text>`,
      );
    }
    series.forEach((s, i) => {
      out.push(`<g class="series" data-series="${i}">`);
      if (s.rows.length > 1) {
        const pts = s.rows.map((r) => `${f(x(r.batch))},${f(y(panel.value(r)))}`).join(' ');
        out.push(
          `<polyline points="${pts}" fill="none" stroke="${s.colour}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
        );
      }
      for (const r of s.rows) {
        const chosen = r.batch === s.chosenBatch;
        const cx = f(x(r.batch));
        const cy = f(y(panel.value(r)));
        out.push(
          `<circle class="point${chosen ? ' chosen' : ''}" data-batch="${r.batch}" data-metric="${panel.metric}" cx="${cx}" cy="${cy}" r="3.5" fill="${s.colour}">` +
            `<title>${esc(`${s.label}, batch ${r.batch}: ${compactNumber(panel.value(r))} ${panel.unit}${chosen ? ' (chosen)' : ''}`)}</title></circle>`,
        );
        if (chosen) {
          out.push(`<circle class="chosen-ring" cx="${cx}" cy="${cy}" r="8" fill="none" stroke="${s.colour}" stroke-width="2"/>`);
          if (panel.metric === 'items')
            out.push(
              `<text class="chosen-label" x="${cx}" y="${f(Math.max(panel.top + 10, +cy - 13))}" text-anchor="middle" fill="${s.colour}" font-weight="600">chosen ${r.batch}</text>`,
            );
        }
      }
      // A chosen batch that was not measured (no batch axis, a skipped profile): a dashed marker line.
      if (!s.rows.some((r) => r.batch === s.chosenBatch)) {
        out.push(
          `<line class="chosen-line" data-batch="${s.chosenBatch}" x1="${f(x(s.chosenBatch))}" x2="${f(x(s.chosenBatch))}" y1="${panel.top}" y2="${bottom}" stroke="${s.colour}" stroke-dasharray="2 4"/>`,
        );
      }
      out.push('</g>');
    });
    out.push('</g>');
  }

  out.push('<g class="legend">');
  series.forEach((s, i) => {
    const ly = legendTop + i * LEGEND_ROW;
    const text = `${s.label}: chosen batch ${s.chosenBatch}${s.skipped ? ` (not profiled: ${s.skipped})` : s.rows.length === 0 ? ' (nothing measured)' : ''}`;
    out.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + 28}" y1="${ly}" y2="${ly}" stroke="${s.colour}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
      `<circle cx="${MARGIN.left + 14}" cy="${ly}" r="3.5" fill="${s.colour}"/>`,
      `<text x="${MARGIN.left + 36}" y="${ly + 4}" fill="#111111">${esc(text)}</text>`,
    );
  });
  out.push('</g>', '</svg>');
  return out.join('\n') + '\n';
}

function subtitle(series: readonly PlotSeries[]): string {
  const slos = [...new Set(series.map((s) => s.latencySloMs))];
  const slo = slos.length === 1 ? `p99 objective ${compactNumber(slos[0]!)} ms; ` : '';
  return `${series.length} profile${series.length === 1 ? '' : 's'}; ${slo}the ringed point is the batch size each profile chose`;
}

/** Coordinates to 0.1 px: shorter files, no float noise. */
const f = (v: number): string => String(Math.round(v * 10) / 10);
