// The Grafana dashboard (deploy/grafana/flotilla.json), checked against what the project really
// exports: a local cluster (nats-server, head, one worker) serves requests, refuses one, evicts a
// model, fails a load and reconciles; its head's and worker's /metrics endpoints are scraped over HTTP like
// Prometheus does. Every panel's PromQL (and every variable's query) is parsed: each metric it
// names must be in those scrapes with the labels its matchers, groupings and legends use (literal
// label values included), rate()/increase() only over counters and histogram series, and
// histogram_quantile() over buckets grouped by `le`. The layout and datasource wiring are checked
// too (grid within 24 columns, no overlapping panels, every query on the `$datasource` variable).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHealthServer, type HealthServer } from '@flotilla/bus';
import { until } from '@flotilla/devkit';
import { headMetrics } from '@flotilla/head';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';

type Obj = Record<string, any>;
const DASHBOARD: Obj = JSON.parse(readFileSync(join(__dirname, 'flotilla.json'), 'utf8'));
const MiB = 1024 * 1024;

// ---------- PromQL: just enough of the grammar to find every selector, function and grouping ----------

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
const FUNCTIONS = new Set([
  ...AGGREGATIONS,
  ...'abs absent absent_over_time ceil changes clamp clamp_max clamp_min delta deriv exp floor histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum idelta increase irate label_join label_replace ln log2 log10 predict_linear rate resets round scalar sgn sort sort_desc sqrt time timestamp vector avg_over_time min_over_time max_over_time sum_over_time count_over_time quantile_over_time stddev_over_time stdvar_over_time last_over_time present_over_time'.split(
    ' ',
  ),
]);
/** Functions whose range-vector argument must be a counter (or a histogram's series). */
const COUNTER_FUNCTIONS = new Set(['rate', 'irate', 'increase', 'resets']);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset']);

interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}
interface Selector {
  metric: string;
  matchers: Matcher[];
  /** Functions and aggregations the selector sits inside, innermost last. */
  within: string[];
}
interface ParsedQuery {
  selectors: Selector[];
  /** Labels named in by / without / on / ignoring / group_left / group_right. */
  grouping: string[];
  functions: string[];
}

const IDENT = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
/** Labels Prometheus attaches to every series of a scrape target. */
const TARGET_LABELS = ['job', 'instance'];

function parsePromQL(expr: string): ParsedQuery {
  const out: ParsedQuery = { selectors: [], grouping: [], functions: [] };
  const stack: string[] = [];
  let pending: string | undefined; // a function or aggregation whose '(' comes next (after a by-clause)
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`${why} at ${i} in: ${expr}`);
  };
  const space = () => {
    while (/\s/.test(expr[i] ?? '')) i++;
  };
  const string = (): string => {
    const q = expr[i]!;
    let s = '';
    for (i++; i < expr.length && expr[i] !== q; i++) s += expr[i] === '\\' ? expr[++i] : expr[i];
    if (expr[i] !== q) fail('unterminated string');
    i++;
    return s;
  };
  const ident = (): string => {
    const m = IDENT.exec(expr.slice(i)) ?? fail('expected a name');
    i += m[0].length;
    return m[0];
  };
  while ((space(), i < expr.length)) {
    const c = expr[i]!;
    if (c === '"' || c === "'" || c === '`') string();
    else if (c === '[') {
      const end = expr.indexOf(']', i);
      if (end < 0) fail("unterminated '['");
      if (!/^\[\s*(\$__rate_interval|\$__interval|\$__range|\d+[smhdwy])(\s*:\s*(\d+[smhdwy])?)?\s*\]$/.test(expr.slice(i, end + 1)))
        fail(`bad range ${expr.slice(i, end + 1)}`);
      i = end + 1;
    } else if (c === '(') {
      stack.push(pending ?? '(');
      pending = undefined;
      i++;
    } else if (c === ')') {
      if (!stack.length) fail("unbalanced ')'");
      stack.pop();
      i++;
    } else if (/[0-9.]/.test(c)) {
      i += /^[0-9.]+(?:[eE][+-]?\d+)?[smhdwy]?/.exec(expr.slice(i))![0].length;
    } else if (IDENT.test(expr.slice(i))) {
      const name = ident();
      space();
      if (GROUPING.has(name)) {
        if (expr[i] === '(') {
          i++;
          while ((space(), expr[i] !== ')')) {
            out.grouping.push(ident());
            space();
            if (expr[i] === ',') i++;
            else if (expr[i] !== ')') fail('expected , or ) in a label list');
          }
          i++;
        } else if (name !== 'group_left' && name !== 'group_right') fail(`${name} without a label list`);
      } else if (KEYWORDS.has(name)) {
        // binary operator keywords; `offset`'s duration is read as a number next
      } else if (AGGREGATIONS.has(name) || expr[i] === '(') {
        if (!FUNCTIONS.has(name)) fail(`unknown function ${name}`);
        out.functions.push(name);
        pending = name;
      } else {
        const sel: Selector = { metric: name, matchers: [], within: stack.filter((s) => s !== '(') };
        if (expr[i] === '{') {
          i++;
          while ((space(), expr[i] !== '}')) {
            const label = ident();
            space();
            const op = (/^(=~|!~|!=|=)/.exec(expr.slice(i)) ?? fail('expected a matcher operator'))[0] as Matcher['op'];
            i += op.length;
            space();
            if (!['"', "'", '`'].includes(expr[i]!)) fail('expected a quoted label value');
            sel.matchers.push({ label, op, value: string() });
            space();
            if (expr[i] === ',') i++;
            else if (expr[i] !== '}') fail('expected , or } in a selector');
          }
          i++;
        }
        out.selectors.push(sel);
      }
    } else if ('+-*/%^=!<>,'.includes(c)) i++;
    else fail(`unexpected '${c}'`);
  }
  if (stack.length) fail("unbalanced '('");
  return out;
}

// ---------- the Prometheus text format: families and series ----------

interface Scrape {
  /** Sample name → label sets of its series. */
  series: Map<string, Array<Record<string, string>>>;
  /** Sample name → its family's TYPE (a histogram's _bucket, _sum and _count say histogram). */
  types: Map<string, string>;
}

function parseExposition(texts: string[]): Scrape {
  const series = new Map<string, Array<Record<string, string>>>();
  const types = new Map<string, string>();
  for (const line of texts.join('\n').split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      const [, family, kind] = type;
      for (const suffix of kind === 'histogram' ? ['_bucket', '_sum', '_count'] : kind === 'summary' ? ['', '_sum', '_count'] : [''])
        types.set(family + suffix, kind!);
      continue;
    }
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not the Prometheus text format: ${line}`);
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    const list = series.get(m[1]!) ?? [];
    list.push(labels as Record<string, string>);
    series.set(m[1]!, list);
  }
  return { series, types };
}

// ---------- the dashboard ----------

interface Query {
  where: string;
  expr: string;
  legend?: string;
}

function panelsOf(d: Obj): Obj[] {
  return (d.panels as Obj[]).flatMap((p) => [p, ...((p.panels as Obj[] | undefined) ?? [])]);
}

function queriesOf(d: Obj): Query[] {
  const fromPanels = panelsOf(d).flatMap((p) =>
    ((p.targets as Obj[] | undefined) ?? []).map((t) => ({
      where: `panel '${p.title}' ${t.refId}`,
      expr: t.expr as string,
      legend: t.legendFormat,
    })),
  );
  const fromVariables = (d.templating.list as Obj[])
    .filter((v) => v.type === 'query')
    .map((v) => ({ where: `variable $${v.name}`, expr: (typeof v.query === 'string' ? v.query : v.query.query) as string }));
  return [...fromPanels, ...fromVariables];
}

/** Why a query does not fit the scrape (empty when it does). */
function problems(q: Query, scrape: Scrape): string[] {
  const out: string[] = [];
  const lv = /^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(q.expr);
  const parsed: ParsedQuery = lv
    ? { selectors: [{ metric: lv[1]!, matchers: [{ label: lv[2]!, op: '=~', value: '.+' }], within: [] }], grouping: [], functions: [] }
    : parsePromQL(q.expr);
  if (parsed.selectors.length === 0) out.push('names no metric');
  // Prometheus adds its target labels to every series it scrapes.
  const available = new Set<string>(TARGET_LABELS);
  for (const s of parsed.selectors) {
    const series = scrape.series.get(s.metric);
    if (!series) {
      out.push(`${s.metric} is not exported`);
      continue;
    }
    const labels = new Set([...TARGET_LABELS, ...series.flatMap((l) => Object.keys(l))]);
    labels.forEach((l) => available.add(l));
    for (const m of s.matchers) {
      if (!labels.has(m.label)) out.push(`${s.metric} has no label ${m.label}`);
      else if (m.op === '=' && !m.value.includes('$') && !TARGET_LABELS.includes(m.label) && !series.some((l) => l[m.label] === m.value))
        out.push(
          `${s.metric} has no series with ${m.label}="${m.value}" (seen: ${[...new Set(series.map((l) => l[m.label]))].join(', ')})`,
        );
    }
    const counterFn = s.within.find((f) => COUNTER_FUNCTIONS.has(f));
    const type = scrape.types.get(s.metric);
    if (counterFn && type !== 'counter' && type !== 'histogram') out.push(`${counterFn}() over ${s.metric}, a ${type}`);
    if (s.within.includes('histogram_quantile') && !s.metric.endsWith('_bucket'))
      out.push(`histogram_quantile over ${s.metric}, not buckets`);
  }
  if (parsed.functions.includes('histogram_quantile') && !parsed.grouping.includes('le')) out.push('histogram_quantile without `le` kept');
  for (const l of parsed.grouping) if (!available.has(l)) out.push(`groups by ${l}, which no selected series has`);
  for (const [, l] of (q.legend ?? '').matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) {
    const kept = parsed.grouping.length ? parsed.grouping.includes(l!) : available.has(l!);
    if (!kept) out.push(`legend {{${l}}} is not a label of the result`);
  }
  return out.map((p) => `${q.where}: ${p}`);
}

// ---------- the tests ----------

describe('the PromQL checker', () => {
  it('finds selectors, their matchers, the functions around them and the grouping labels', () => {
    const q = parsePromQL(
      'histogram_quantile(0.99, sum by (model, le) (rate(flotilla_request_seconds_bucket{model=~"$model", code="OK"}[$__rate_interval])))',
    );
    expect(q.selectors).toEqual([
      {
        metric: 'flotilla_request_seconds_bucket',
        matchers: [
          { label: 'model', op: '=~', value: '$model' },
          { label: 'code', op: '=', value: 'OK' },
        ],
        within: ['histogram_quantile', 'sum', 'rate'],
      },
    ]);
    expect(q.grouping).toEqual(['model', 'le']);
    expect(parsePromQL('a / on (x) group_left b').selectors.map((s) => s.metric)).toEqual(['a', 'b']);
  });

  it.each([
    ['rat(flotilla_requests_total[5m])', 'unknown function rat'],
    ['sum(rate(flotilla_requests_total[5m])', "unbalanced '('"],
    ['rate(flotilla_requests_total{code="OK"[5m])', 'expected , or }'],
    ['rate(flotilla_requests_total[5 m])', 'bad range'],
    ['sum by model (x)', 'without a label list'],
  ])('refuses %p', (expr, why) => expect(() => parsePromQL(expr)).toThrow(why));

  it('reports a metric that is not exported, a wrong label value, rate over a gauge and a lost legend label', () => {
    const scrape = parseExposition([
      '# TYPE g gauge\ng{model="m"} 1\n# TYPE c counter\nc{model="m",code="OK"} 2\n# TYPE h histogram\nh_bucket{le="1",model="m"} 1\nh_sum{model="m"} 1\nh_count{model="m"} 1',
    ]);
    expect(problems({ where: 'q', expr: 'sum by (model) (rate(c{code="OK"}[5m]))', legend: '{{model}}' }, scrape)).toEqual([]);
    expect(problems({ where: 'q', expr: 'rate(nope_total[5m])' }, scrape)).toEqual(['q: nope_total is not exported']);
    expect(problems({ where: 'q', expr: 'c{code="ERR"}' }, scrape)[0]).toMatch(/no series with code="ERR"/);
    expect(problems({ where: 'q', expr: 'rate(g[5m])' }, scrape)).toEqual(['q: rate() over g, a gauge']);
    expect(problems({ where: 'q', expr: 'sum by (model) (c)', legend: '{{code}}' }, scrape)).toEqual([
      'q: legend {{code}} is not a label of the result',
    ]);
    expect(problems({ where: 'q', expr: 'histogram_quantile(0.9, sum by (model) (rate(h_bucket[5m])))' }, scrape)).toEqual([
      'q: histogram_quantile without `le` kept',
    ]);
  });
});

describe('deploy/grafana/flotilla.json', () => {
  it('is a classic dashboard model on the current schema, every query on the $datasource Prometheus variable', () => {
    expect(DASHBOARD.schemaVersion).toBe(43);
    expect(DASHBOARD.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    const ds = (DASHBOARD.templating.list as Obj[]).find((v) => v.type === 'datasource');
    expect(ds).toMatchObject({ name: 'datasource', query: 'prometheus' });
    for (const p of panelsOf(DASHBOARD).filter((p) => p.type !== 'row')) {
      expect([p.title, p.datasource]).toEqual([p.title, { type: 'prometheus', uid: '${datasource}' }]);
      expect([p.title, typeof p.description, p.targets.length > 0]).toEqual([p.title, 'string', true]);
      for (const t of p.targets) expect([p.title, t.datasource.uid]).toEqual([p.title, '${datasource}']);
      expect(new Set(p.targets.map((t: Obj) => t.refId)).size).toBe(p.targets.length);
    }
  });

  it('lays the panels out on the 24-column grid without overlaps, with unique ids', () => {
    const panels = panelsOf(DASHBOARD);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect([p.title, x >= 0 && w > 0 && x + w <= 24 && h > 0]).toEqual([p.title, true]);
      for (let cx = x; cx < x + w; cx++)
        for (let cy = y; cy < y + h; cy++) {
          expect([p.title, cells.has(`${cx},${cy}`)]).toEqual([p.title, false]);
          cells.add(`${cx},${cy}`);
        }
    }
  });

  describe('against the metrics a real cluster exports', () => {
    let cluster: LocalCluster;
    let scrape: Scrape;
    const servers: HealthServer[] = [];

    beforeAll(async () => {
      // One worker whose budget fits one of two 60 MiB models: deploying the second evicts the first.
      cluster = await LocalCluster.start({ workers: 1, worker: { memoryBudgetBytes: 100 * MiB } });
      const head = cluster.head;
      const worker = cluster.workers[0]!;
      const hm = headMetrics(
        () => head.status(),
        () => head.lastTickMs,
      );
      servers.push(await startHealthServer({ port: 0, host: '127.0.0.1', notReady: () => null, metrics: () => hm.text() }));
      servers.push(await startHealthServer({ port: 0, host: '127.0.0.1', notReady: () => null, metrics: () => worker.metrics.text() }));
      const client = cluster.client();
      const spec = { device: 'cpu' as const, memoryBytes: 60 * MiB, profile: { enabled: false } };
      const x = { dtype: 'float32' as const, dims: [2, 16], data: new Float32Array(32) };
      await client.deploy(sampleModelPath('mlp'), 'a', spec);
      await client.infer('a', { x });
      await client.deploy(sampleModelPath('mlp'), 'b', spec);
      await Promise.all(Array.from({ length: 8 }, () => client.infer('b', { x })));
      await client.infer('b', { x: { dtype: 'float32', dims: [1, 3], data: new Float32Array(3) } }).catch(() => undefined); // INPUT_MISMATCH
      // A file that is not ONNX: its load fails on the worker.
      const broken = join(mkdtempSync(join(tmpdir(), 'flotilla-grafana-')), 'broken.onnx');
      writeFileSync(broken, Buffer.from('not an onnx model'));
      await client.deploy(broken, 'broken', { ...spec, memoryBytes: 1 * MiB, wait: false });
      await until(async () => ((await worker.metrics.text()).includes('type="load_failed"') ? true : undefined));
      await client.undeploy('broken');
      await until(async () => (head.lastTickMs > 0 ? true : undefined));
      const texts = await Promise.all(servers.map(async (s) => (await fetch(`http://127.0.0.1:${s.port}/metrics`)).text()));
      scrape = parseExposition(texts);
    }, 120_000);

    afterAll(async () => {
      await Promise.allSettled(servers.map((s) => s.close()));
      await cluster?.stop();
    });

    it('the scrape holds the cluster that ran: an eviction, a failed load, a refusal, ready replicas', () => {
      expect(scrape.series.get('flotilla_worker_events_total')).toEqual(
        expect.arrayContaining([expect.objectContaining({ type: 'evicted' }), expect.objectContaining({ type: 'load_failed' })]),
      );
      expect(scrape.series.get('flotilla_requests_total')).toEqual(
        expect.arrayContaining([expect.objectContaining({ model: 'b', code: 'INPUT_MISMATCH' })]),
      );
      expect(scrape.series.get('flotilla_replicas')).toEqual(expect.arrayContaining([{ model: 'b', kind: 'ready' }]));
    });

    it("every panel's and variable's query names exported metrics with their real labels", () => {
      const queries = queriesOf(DASHBOARD);
      expect(queries.length).toBeGreaterThanOrEqual(15);
      expect(queries.flatMap((q) => problems(q, scrape))).toEqual([]);
    });

    it('every metric family the head and worker export has a panel', () => {
      const used = new Set(
        queriesOf(DASHBOARD)
          .flatMap((q) => (q.expr.startsWith('label_values') ? [] : parsePromQL(q.expr).selectors))
          .map((s) => s.metric),
      );
      const family = (name: string) => name.replace(/_(bucket|sum|count)$/, '');
      const exported = new Set([...scrape.series.keys()].filter((n) => n.startsWith('flotilla_')).map(family));
      const shown = new Set([...used].map(family));
      expect([...exported].filter((f) => !shown.has(f))).toEqual([]);
    });
  });
});
