// Charts: uPlot for the sparklines and the profile plot, plain elements for the memory bars and the
// batch histogram. Every chart has a text alternative (an aria-label with the numbers, or a table).
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatBytes, formatNumber, type DeviceBar, type ProfileView } from '../../src/view-model.js';

/** A model's colour: the same on every bar, legend and chart (a palette readable on white). */
const PALETTE = ['#1d4ed8', '#c2410c', '#047857', '#7c3aed', '#be185d', '#0e7490', '#a16207', '#b91c1c', '#4d7c0f', '#334155'];
const order = new Map<string, number>();

/** Colours go to the deployed models in name order (distinct for up to 10); others by a hash of the name. */
export function setModelOrder(models: readonly string[]): void {
  order.clear();
  models.forEach((m, i) => order.set(m, i));
}

export function modelColor(model: string): string {
  let h = order.get(model);
  if (h === undefined) {
    h = 0;
    for (let i = 0; i < model.length; i++) h = (h * 31 + model.charCodeAt(i)) >>> 0;
  }
  return PALETTE[h % PALETTE.length]!;
}

/** Width of the element, following resizes. */
function useWidth(ref: { current: HTMLElement | null }, onWidth: (w: number) => void): void {
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const ro = new ResizeObserver(() => onWidth(Math.max(80, Math.floor(el.clientWidth))));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
}

/** A uPlot chart that follows its data and its container's width. */
function UPlot(props: { options: Omit<uPlot.Options, 'width'>; data: uPlot.AlignedData; className?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current!;
    plot.current = new uPlot({ ...props.options, width: Math.max(80, el.clientWidth) }, props.data, el);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [JSON.stringify(props.options.series.map((s) => s.label)), props.options.height]);
  useEffect(() => {
    plot.current?.setData(props.data);
  }, [props.data]);
  useWidth(box, (w) => plot.current?.setSize({ width: w, height: props.options.height }));
  return <div ref={box} class={props.className} aria-hidden="true" />;
}

/**
 * A value over recent samples, with its latest number beside it. `value` may be null for a sample
 * with nothing to show (a gap: a replica that answered no request lately has no p99). `compact` is
 * the table-cell size (replica rows).
 */
export function Sparkline<P extends { t: number }>(props: {
  label: string;
  unit: string;
  points: P[];
  value: (p: P) => number | null;
  color: string;
  compact?: boolean;
}) {
  const ys = props.points.map(props.value);
  const known = ys.filter((y): y is number => y !== null);
  const last = ys[ys.length - 1] ?? null;
  const max = known.length ? Math.max(...known) : 0;
  const now = last === null ? (ys.length ? 'none lately' : 'no samples yet') : `now ${formatNumber(last)} ${props.unit}`;
  const text = `${props.label}: ${now}, peak ${formatNumber(max)} over the last ${props.points.length} samples`;
  const options: Omit<uPlot.Options, 'width'> = {
    height: props.compact ? 22 : 44,
    legend: { show: false },
    cursor: { show: false },
    select: { show: false, left: 0, top: 0, width: 0, height: 0 },
    scales: { x: { time: false }, y: { range: (_u, _min, mx) => [0, Math.max(1, (mx ?? 0) * 1.1)] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { label: props.label, stroke: props.color, fill: `${props.color}22`, width: 1.5, points: { show: false } }],
  };
  return (
    <figure class={props.compact ? 'spark spark-mini' : 'spark'} role="img" aria-label={text} title={text}>
      <figcaption>
        {props.compact ? null : <span>{props.label} </span>}
        <strong>{last === null ? '–' : formatNumber(last)}</strong> <span class="unit">{props.unit}</span>
      </figcaption>
      <UPlot options={options} data={[props.points.map((p) => p.t), ys]} />
    </figure>
  );
}

export function MemoryBar({ bar }: { bar: DeviceBar }) {
  // The bar spans the budget (or the use, when over it): a budget of 100 MiB on a 23 GiB host would
  // otherwise be a sliver. The capacity is given in words beside it.
  const span = Math.max(bar.budgetBytes, bar.usedBytes, 1);
  const pct = (b: number) => `${((100 * b) / span).toFixed(3)}%`;
  const over = bar.freeBytes < 0;
  return (
    <div class="membar-wrap">
      <div class="membar" role="img" aria-label={bar.summary} title={bar.summary}>
        {bar.segments.map((s) => (
          <div
            key={s.replica}
            class="membar-seg"
            style={{ left: pct(s.offsetBytes), width: pct(s.bytes), background: modelColor(s.model) }}
            title={`${s.model} (${s.replica}): ${formatBytes(s.bytes)}`}
          />
        ))}
        {over && <div class="membar-budget" style={{ left: pct(bar.budgetBytes) }} title="budget" />}
      </div>
      <div class="membar-scale">
        <span class={over ? 'over' : ''}>
          {formatBytes(bar.usedBytes)} used of {formatBytes(bar.budgetBytes)} budget ({Math.round(bar.usedFraction * 100)}%)
          {over ? ' — over budget' : ''}
        </span>
        <span>
          free {formatBytes(Math.max(0, bar.freeBytes))} · capacity {formatBytes(bar.capacityBytes)}
        </span>
      </div>
      {bar.segments.length > 0 && (
        <ul class="legend" aria-label={`replicas on ${bar.id}`}>
          {bar.segments.map((s) => (
            <li key={s.replica}>
              <span class="swatch" style={{ background: modelColor(s.model) }} aria-hidden="true" />
              {s.model} <span class="muted">{formatBytes(s.bytes)}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Histogram(props: { model: string; bins: Array<{ batch: string; count: number }> }) {
  const total = props.bins.reduce((s, b) => s + b.count, 0);
  const max = Math.max(1, ...props.bins.map((b) => b.count));
  const text = `batch sizes of ${props.model}: ${props.bins.map((b) => `${b.batch}: ${b.count}`).join(', ')}`;
  if (total === 0) return <p class="muted small">no batches run yet</p>;
  const step = Math.max(1, Math.ceil(props.bins.length / 8));
  const last = props.bins.length - 1;
  return (
    <figure class="hist" role="img" aria-label={text} title={text}>
      <figcaption>batch sizes run ({formatNumber(total)} batches)</figcaption>
      <div class="hist-bars">
        {props.bins.map((b, i) => (
          <div key={b.batch} class="hist-col" title={`batch ${b.batch}: ${b.count}`}>
            <div class="hist-bar" style={{ height: `${Math.max(2, (100 * b.count) / max)}%`, background: modelColor(props.model) }} />
            {/* At most ~8 labels: every step-th from the first, and the last (none crowding it). */}
            {i === last || (i % step === 0 && last - i >= step) ? <span class="hist-label">{b.batch}</span> : null}
          </div>
        ))}
      </div>
    </figure>
  );
}

/** items/s (left axis) and p99 ms (right axis) against batch size, the chosen batch marked. */
export function ProfileChart({ p }: { p: ProfileView }) {
  const xs = p.points.map((pt) => pt.batch);
  const chosenIdx = xs.indexOf(p.chosenBatch);
  const markChosen: uPlot.Plugin = {
    hooks: {
      draw: (u) => {
        if (chosenIdx < 0) return;
        const x = u.valToPos(p.chosenBatch, 'x', true);
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = '#111827';
        ctx.setLineDash([4, 4]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = '#111827';
        ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
        const label = `chosen: ${p.chosenBatch}`;
        const w = ctx.measureText(label).width;
        // Right of the line, or left of it when that would run past the plot.
        const lx = x + 4 * devicePixelRatio + w > u.bbox.left + u.bbox.width ? x - 4 * devicePixelRatio - w : x + 4 * devicePixelRatio;
        ctx.fillText(label, lx, u.bbox.top + 14 * devicePixelRatio);
        ctx.restore();
      },
    },
  };
  const options: Omit<uPlot.Options, 'width'> = {
    height: 220,
    plugins: [markChosen],
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: false, distr: 3, log: 2 },
      ips: { auto: true, range: (_u, _mn, mx) => [0, mx * 1.1] },
      ms: { auto: true, range: (_u, _mn, mx) => [0, mx * 1.1] },
    },
    axes: [
      { label: 'batch size', values: (_u, vals) => vals.map((v) => String(v)), stroke: '#374151' },
      { scale: 'ips', label: 'items/s', size: 64, stroke: '#1d4ed8', values: (_u, vals) => vals.map((v) => formatNumber(v)) },
      {
        scale: 'ms',
        side: 1,
        label: 'p99 ms',
        size: 56,
        stroke: '#b45309',
        grid: { show: false },
        values: (_u, vals) => vals.map((v) => formatNumber(v)),
      },
    ],
    series: [
      { label: 'batch' },
      {
        label: 'items/s',
        scale: 'ips',
        stroke: '#1d4ed8',
        width: 2,
        points: { size: 7 },
        value: (_u, v) => (v == null ? '–' : formatNumber(v)),
      },
      {
        label: 'p99 ms',
        scale: 'ms',
        stroke: '#b45309',
        width: 2,
        dash: [6, 3],
        points: { size: 7 },
        value: (_u, v) => (v == null ? '–' : formatNumber(v)),
      },
    ],
  };
  return (
    <div
      class="profile-chart"
      role="img"
      aria-label={`${p.model}: items/s and p99 latency against batch size ${xs.join(', ')}; chosen batch ${p.chosenBatch}. The profile table has the numbers.`}
      data-batches={xs.join(',')}
      data-chosen={p.chosenBatch}
    >
      <UPlot options={options} data={[xs, p.points.map((pt) => pt.itemsPerSec), p.points.map((pt) => pt.p99Ms)]} />
    </div>
  );
}
