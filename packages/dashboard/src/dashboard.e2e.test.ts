// The dashboard in a real browser (Debian's chromium through playwright-core) against a real local
// cluster: the page shows the workers and models; after a deploy, a scale and an eviction it shows
// each within 2 s; the profile chart has one point per profiled batch size; under load each replica
// row shows its p99 latency (heartbeat latencyMs) beside items/s; a screenshot is written
// to .cache/dashboard.png. Skipped, with the reason printed, where chromium is not installed.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import type { FlotillaClient } from '@flotilla/client';
import { startDashboard, type Dashboard } from './index.js';

const CHROMIUM = process.env.FLOTILLA_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = join(__dirname, '../../..');
const SCREENSHOT = join(ROOT, '.cache/dashboard.png');
const MiB = 1024 * 1024;
/** What the page must reflect a change within (the feed polls every 500 ms). */
const WITHIN_MS = 2000;

const have = existsSync(CHROMIUM);
if (!have) console.log(`dashboard.e2e: skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set FLOTILLA_CHROMIUM)`);
const suite = have ? describe : describe.skip;

suite('dashboard in a browser', () => {
  let cluster: LocalCluster;
  let client: FlotillaClient;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  const x = { dtype: 'float32' as const, dims: [1, 16], data: randomFloats(16, 1) };
  const small = { device: 'cpu' as const, memoryBytes: 20 * MiB, profile: { enabled: false } };

  beforeAll(async () => {
    cluster = await LocalCluster.start({ workers: 1, worker: { memoryBudgetBytes: 100 * MiB, eviction: 'lru' } });
    client = cluster.client();
    const launching = chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    // Profiled (a short sweep with thread tuning): the profile section has something to plot.
    await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', memoryBytes: 20 * MiB, profile: { budgetMs: 600, maxBatch: 32 } });
    dashboard = await startDashboard({ client: cluster.client(), port: 0, allowActions: true });
    browser = await launching;
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(dashboard.url);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await cluster?.stop();
  });

  /** Waits for `selector` within WITHIN_MS of now and returns how long it took, ms. */
  async function shows(selector: string): Promise<number> {
    const t0 = Date.now();
    await page.waitForSelector(selector, { timeout: WITHIN_MS });
    return Date.now() - t0;
  }

  it('shows the worker, its device with the eviction policy, the head and the model', async () => {
    await shows('[data-worker="w0"]');
    await shows('[data-model="mlp"][data-ready="1"]');
    expect(await page.textContent('[data-device="w0/cpu"]')).toContain('eviction: lru');
    expect(await page.getAttribute('[data-device="w0/cpu"] .membar', 'aria-label')).toMatch(
      /^cpu: 20 MiB used of a 100 MiB budget .*: mlp 20 MiB$/,
    );
    expect(await page.textContent('#heads')).toContain('leading');
  });

  it('reflects a deploy, a scale and an eviction within 2 s each', async () => {
    await client.deploy(sampleModelPath('mlp'), 'b', small);
    const deployMs = await shows('[data-model="b"][data-ready="1"]');

    await client.scale('mlp', 2, { wait: true });
    const scaleMs = await shows('[data-model="mlp"][data-ready="2"][data-desired="2"]');

    // 20 + 20 (mlp) + 20 (b) + 40 (c) = 100 MiB fits; d (40 MiB) makes the worker evict by LRU.
    await client.infer('b', { x });
    await client.deploy(sampleModelPath('mlp'), 'c', { ...small, memoryBytes: 40 * MiB });
    await client.infer('mlp', { x });
    await client.deploy(sampleModelPath('mlp'), 'd', { ...small, memoryBytes: 40 * MiB });
    const evicted = (await client.events({ limit: 100 })).filter((e) => e.type === 'evicted');
    expect(evicted.length).toBeGreaterThan(0);
    const evictionMs = await shows(`[data-event-type="evicted"][data-event-model="${evicted[0]!.model}"]`);
    await shows('[data-model="d"][data-ready="1"]');
    console.log(
      `dashboard.e2e: the page showed the deploy ${deployMs} ms, the scale ${scaleMs} ms, the eviction ${evictionMs} ms after the SDK call returned`,
    );
    for (const ms of [deployMs, scaleMs, evictionMs]) expect(ms).toBeLessThan(WITHIN_MS);

    // The events timeline filters by model (keyboard-reachable select).
    await page.selectOption('#events select', 'd');
    const types = await page.$$eval('[data-event-type]', (els) => els.map((e) => e.getAttribute('data-event-model')));
    expect(types.length).toBeGreaterThan(0);
    expect(new Set(types)).toEqual(new Set(['d']));
    await page.selectOption('#events select', '');
  });

  it('plots one point per profiled batch size, the chosen one marked, with the table as text alternative', async () => {
    const [profile] = await client.profiles('mlp');
    expect(profile).toBeDefined();
    const batches = profile!.rows.map((r) => r.batch).sort((a, b) => a - b);
    // b, c and d serve the same file as mlp: its profile is shown once, naming all four.
    const card = '[data-profile-models~="mlp"]';
    expect(await page.getAttribute(card, 'data-profile-models')).toBe('b c d mlp');
    const chart = `${card} .profile-chart`;
    await shows(chart);
    expect(await page.getAttribute(chart, 'data-batches')).toBe(batches.join(','));
    expect(await page.getAttribute(chart, 'data-chosen')).toBe(String(profile!.chosen.maxBatchSize));
    expect(await page.$$eval(`${card} table.points tbody tr`, (rows) => rows.length)).toBe(batches.length);
    expect(await page.$$eval(`${card} canvas`, (c) => c.length)).toBeGreaterThan(0);
  });

  it('acts only through the API it was started with, and shows the outcome; writes the screenshot', async () => {
    // Traffic for the sparklines and batch histograms, still running at the screenshot.
    let stop = false;
    const load = async (model: string) => {
      while (!stop) await client.infer(model, { x }).catch(() => undefined);
    };
    const traffic = Promise.all(Array.from({ length: 24 }, (_, i) => load(i % 3 === 0 ? 'd' : 'mlp')));
    await page.waitForTimeout(1500);

    await page.fill('[data-model="b"] input[type="number"]', '0');
    await page.click('[data-model="b"] button[type="submit"]');
    await shows('.banner.ok');
    expect(await shows('[data-model="b"][data-desired="0"]')).toBeLessThan(WITHIN_MS);
    await page.selectOption('#events select', '');
    await page.waitForTimeout(600); // one more snapshot: the sparklines after the load
    // Each replica under load shows the p99 its heartbeats report (latencyMs), with a text alternative.
    const p99Cell = '[data-model="mlp"] tr[data-replica] td[data-p99-ms]:not([data-p99-ms=""])';
    await page.waitForSelector(p99Cell, { timeout: 5000 });
    expect(Number(await page.getAttribute(p99Cell, 'data-p99-ms'))).toBeGreaterThan(0);
    expect(await page.getAttribute(`${p99Cell} figure`, 'aria-label')).toMatch(/^p99 latency of \S+: now [\d.,]+ ms, peak /);
    expect(await page.textContent(`${p99Cell} .sr-only`)).toMatch(/^p50 [\d.,]+ ms over its last \d+ requests$/);
    mkdirSync(join(ROOT, '.cache'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    stop = true;
    await traffic;
    expect(existsSync(SCREENSHOT)).toBe(true);
  });
});
