// The dashboard page: heads, workers with their devices' memory, deployments with their replicas,
// the events timeline (filterable by model) and each model's profile. It renders the snapshots the
// server streams (api/stream) and never computes cluster state itself (shape.ts does, server side).
import { useEffect, useMemo, useState } from 'preact/hooks';
import {
  SNAPSHOT_VERSION,
  filterEvents,
  formatBytes,
  formatNumber,
  type DashboardSnapshot,
  type DeploymentRow,
  type ProfileView,
  type WorkerView,
} from '../../src/view-model.js';
import { Histogram, MemoryBar, ProfileChart, Sparkline, modelColor, setModelOrder } from './charts.js';

type Link = 'connecting' | 'live' | 'reconnecting';

function useSnapshot(): { snap?: DashboardSnapshot; link: Link } {
  const [snap, setSnap] = useState<DashboardSnapshot>();
  const [link, setLink] = useState<Link>('connecting');
  useEffect(() => {
    // EventSource reconnects by itself (the server asks for 1 s); each connection starts with a full snapshot.
    const es = new EventSource('api/stream');
    es.addEventListener('snapshot', (e) => {
      setSnap(JSON.parse((e as MessageEvent<string>).data) as DashboardSnapshot);
      setLink('live');
    });
    es.onerror = () => setLink('reconnecting');
    return () => es.close();
  }, []);
  return { snap, link };
}

const time = (ms: number) => new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
const ago = (ms: number) =>
  ms < 1500 ? 'just now' : ms < 90_000 ? `${Math.round(ms / 1000)} s ago` : `${Math.round(ms / 60_000)} min ago`;

export function App() {
  const { snap, link } = useSnapshot();
  const [model, setModel] = useState(() => new URLSearchParams(location.search).get('model') ?? '');
  const [notice, setNotice] = useState<{ kind: 'ok' | 'error'; text: string }>();

  if (!snap) {
    return (
      <main class="page">
        <h1>Flotilla</h1>
        <p role="status">{link === 'reconnecting' ? 'Cannot reach the dashboard server; retrying…' : 'Connecting to the cluster…'}</p>
      </main>
    );
  }
  if (snap.v !== SNAPSHOT_VERSION) {
    return (
      <main class="page">
        <p role="alert">
          This page (snapshot version {SNAPSHOT_VERSION}) does not match the server ({snap.v}): reload it.
        </p>
      </main>
    );
  }

  setModelOrder(snap.deployments.map((d) => d.name));

  const act = async (path: string, body: object, what: string) => {
    setNotice(undefined);
    try {
      const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const json = (await res.json()) as { ok?: boolean; error?: { code: string; message: string } };
      if (json.error) setNotice({ kind: 'error', text: `${what}: ${json.error.code}: ${json.error.message}` });
      else setNotice({ kind: 'ok', text: `${what}: done` });
    } catch (err) {
      setNotice({ kind: 'error', text: `${what}: ${(err as Error).message}` });
    }
  };

  return (
    <>
      <a class="skip" href="#deployments">
        Skip to deployments
      </a>
      <header class="top">
        <div class="brand">
          <h1>Flotilla</h1>
          <span class="cluster">
            cluster <strong>{snap.cluster}</strong>
          </span>
        </div>
        <nav aria-label="sections">
          <a href="#heads">Heads</a>
          <a href="#workers">Workers</a>
          <a href="#deployments">Deployments</a>
          <a href="#events">Events</a>
          <a href="#profiles">Profiles</a>
        </nav>
        <div class={`link link-${link}`} role="status" aria-live="polite">
          <span class="dot" aria-hidden="true" />
          {link === 'live' ? `live · ${time(snap.at)}` : link === 'reconnecting' ? 'reconnecting…' : 'connecting…'}
          {snap.allowActions ? <span class="badge warn">actions on</span> : <span class="badge">read-only</span>}
        </div>
      </header>
      <main class="page">
        {snap.error && (
          <p class="banner error" role="alert">
            Cannot read the cluster: <code>{snap.error.code}</code> {snap.error.message}. Showing the last state read.
          </p>
        )}
        {notice && (
          <p class={`banner ${notice.kind}`} role={notice.kind === 'error' ? 'alert' : 'status'}>
            {notice.text}{' '}
            <button type="button" class="link-button" onClick={() => setNotice(undefined)}>
              dismiss
            </button>
          </p>
        )}
        <Summary snap={snap} />
        <Heads snap={snap} />
        <section id="workers" aria-labelledby="workers-h">
          <h2 id="workers-h">Workers and devices</h2>
          {snap.workers.length === 0 ? <p class="muted">No workers have reported yet.</p> : null}
          <div class="grid">
            {snap.workers.map((w) => (
              <WorkerCard key={w.id} w={w} />
            ))}
          </div>
        </section>
        <section id="deployments" aria-labelledby="deployments-h">
          <h2 id="deployments-h">Deployments</h2>
          {snap.deployments.length === 0 ? (
            <p class="muted">
              Nothing is deployed. Try <code>flotilla deploy model.onnx --name m</code>.
            </p>
          ) : null}
          {snap.deployments.map((d) => (
            <DeploymentCard key={d.name} d={d} allowActions={snap.allowActions} act={act} />
          ))}
        </section>
        <Events snap={snap} model={model} setModel={setModel} />
        <Profiles snap={snap} />
      </main>
    </>
  );
}

function Summary({ snap }: { snap: DashboardSnapshot }) {
  const devices = snap.workers.flatMap((w) => w.devices);
  const used = devices.reduce((s, d) => s + d.usedBytes, 0);
  const budget = devices.reduce((s, d) => s + d.budgetBytes, 0);
  const replicas = snap.deployments.reduce((s, d) => s + d.ready, 0);
  const ips = snap.deployments.reduce((s, d) => s + d.itemsPerSec, 0);
  const tiles: Array<[string, string]> = [
    ['workers', `${snap.workers.filter((w) => w.alive).length} / ${snap.workers.length}`],
    ['models', String(snap.deployments.length)],
    ['ready replicas', String(replicas)],
    ['memory used', `${formatBytes(used)} / ${formatBytes(budget)}`],
    ['items/s', formatNumber(ips)],
  ];
  return (
    <dl class="tiles" aria-label="cluster summary">
      {tiles.map(([k, v]) => (
        <div key={k} class="tile" data-tile={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

function Heads({ snap }: { snap: DashboardSnapshot }) {
  const l = snap.heads.leader;
  return (
    <section id="heads" aria-labelledby="heads-h">
      <h2 id="heads-h">Heads</h2>
      <div class="card heads">
        {l ? (
          <p>
            <span class="badge ok">leading</span> <strong data-head={l.id}>{l.id}</strong>{' '}
            <span class="muted">
              {l.host ? `${l.host}, ` : ''}pid {l.pid}, since {time(l.since ?? l.startedAt)}
            </span>
          </p>
        ) : (
          <p class="muted">No head has answered.</p>
        )}
        {snap.heads.standbys.map((h) => (
          <p key={h.id} data-head={h.id} data-role={h.role ?? 'standby'}>
            {/* Another head still saying `leader` is a former leader whose presence has not expired yet. */}
            <span class="badge">{h.role === 'leader' ? 'former leader' : 'standby'}</span> <strong>{h.id}</strong>{' '}
            <span class="muted">
              {h.host ? `${h.host}, ` : ''}pid {h.pid}
              {h.since !== undefined ? `, since ${time(h.since)}` : ''}
              {h.lastSeenAt !== undefined ? `, seen ${Math.max(0, Math.round((snap.at - h.lastSeenAt) / 100) / 10)} s ago` : ''}
            </span>
          </p>
        ))}
        {snap.heads.standbyNote && snap.heads.standbys.length === 0 ? (
          <p class="muted small">Standby heads: {snap.heads.standbyNote}.</p>
        ) : null}
        {l && !snap.heads.standbyNote && snap.heads.standbys.length === 0 ? <p class="muted small">No standby head.</p> : null}
      </div>
    </section>
  );
}

function WorkerCard({ w }: { w: WorkerView }) {
  return (
    <article class={`card worker ${w.alive ? '' : 'dead'}`} aria-labelledby={`w-${w.id}`} data-worker={w.id}>
      <header class="card-h">
        <h3 id={`w-${w.id}`}>{w.id}</h3>
        <span class={`badge ${w.alive && w.state === 'running' ? 'ok' : 'warn'}`}>{w.state}</span>
      </header>
      <p class="muted small">
        {w.hostname} · {w.cpu}
        {w.gpus ? ` · ${w.gpus} GPU${w.gpus > 1 ? 's' : ''}` : ''} · heard {ago(w.lastSeenAgoMs)}
      </p>
      {w.devices.map((d) => (
        <div key={d.id} class="device" data-device={`${w.id}/${d.id}`}>
          <div class="device-h">
            <strong>{d.id}</strong> <span class="muted small">{d.executionProvider}</span>
            <span class="badge" title="eviction policy">
              eviction: {d.policy}
            </span>
          </div>
          <MemoryBar bar={d} />
        </div>
      ))}
    </article>
  );
}

function DeploymentCard(props: {
  d: DeploymentRow;
  allowActions: boolean;
  act: (path: string, body: object, what: string) => Promise<void>;
}) {
  const { d } = props;
  const [replicas, setReplicas] = useState(String(d.desired));
  useEffect(() => setReplicas(String(d.desired)), [d.desired]);
  const color = modelColor(d.name);
  const api = `api/models/${encodeURIComponent(d.name)}`;
  const state = d.dormant ? 'dormant (evicted)' : d.desired === 0 ? 'scaled to zero' : d.ready >= d.desired ? 'ready' : 'placing';
  return (
    <article class="card deployment" aria-labelledby={`d-${d.name}`} data-model={d.name} data-ready={d.ready} data-desired={d.desired}>
      <header class="card-h">
        <h3 id={`d-${d.name}`}>
          <span class="swatch" style={{ background: color }} aria-hidden="true" />
          {d.name}
        </h3>
        <span class={`badge ${state === 'ready' ? 'ok' : 'warn'}`}>{state}</span>
        <span class="replicas-count">
          <strong>
            {d.ready}/{d.desired}
          </strong>{' '}
          replicas ready
        </span>
        <span class="muted small">device {d.device}</span>
        {d.pinned ? <span class="badge">pinned</span> : null}
      </header>
      {d.pendingReason && (
        <p class="banner warn small">
          <code>{d.pendingReason.code}</code> {d.pendingReason.message}
        </p>
      )}
      <div class="dep-body">
        <div class="dep-facts">
          <dl class="facts">
            <dt>batching</dt>
            <dd>
              max batch {d.maxBatchSize ?? 'auto'}
              {d.tunedBatchSizes ? <span data-tuned>{`, tuned to ${d.tunedBatchSizes.join(', ')} on its traffic`}</span> : null}
              {d.maxQueueDelayMs !== undefined ? `, delay ${d.maxQueueDelayMs} ms` : ''}
            </dd>
            <dt>queue / in flight</dt>
            <dd>
              {d.queueDepth} / {d.inFlight}
            </dd>
            <dt>p99 at chosen batch</dt>
            <dd>{d.profileP99Ms !== undefined ? `${formatNumber(d.profileP99Ms)} ms (profile)` : '–'}</dd>
            <dt>autoscale</dt>
            <dd>
              {d.autoscale
                ? `${d.autoscale.min}–${d.autoscale.max} replicas${d.autoscale.targetPerReplica ? `, target ${d.autoscale.targetPerReplica}/replica` : ''}`
                : 'off'}
            </dd>
            <dt>last scaling</dt>
            <dd data-last-scaling>
              {d.lastScaling
                ? `${time(d.lastScaling.at)}: ${d.lastScaling.from ?? '?'} → ${d.lastScaling.to ?? '?'}${d.lastScaling.reason ? ` (${d.lastScaling.reason})` : ''}`
                : '–'}
            </dd>
          </dl>
          {props.allowActions && (
            <form
              class="actions"
              aria-label={`actions on ${d.name}`}
              onSubmit={(e) => {
                e.preventDefault();
                void props.act(`${api}/scale`, { replicas: Number(replicas) }, `scale ${d.name} to ${replicas}`);
              }}
            >
              <label>
                replicas{' '}
                <input
                  type="number"
                  min={0}
                  max={1000}
                  value={replicas}
                  onInput={(e) => setReplicas((e.target as HTMLInputElement).value)}
                />
              </label>
              <button type="submit">Scale</button>
              <button
                type="button"
                class="danger"
                onClick={() => {
                  if (confirm(`Undeploy ${d.name}? Its replicas are unloaded.`))
                    void props.act(`${api}/undeploy`, {}, `undeploy ${d.name}`);
                }}
              >
                Undeploy
              </button>
            </form>
          )}
        </div>
        <div class="dep-charts">
          <Sparkline label="items/s" unit="items/s" points={d.series} value={(p) => p.itemsPerSec} color={color} />
          <Sparkline label="queue depth" unit="requests" points={d.series} value={(p) => p.queueDepth} color="#b45309" />
          <Histogram model={d.name} bins={d.batchHistogram} />
        </div>
      </div>
      <table class="replicas">
        <caption class="sr-only">Replicas of {d.name}</caption>
        <thead>
          <tr>
            <th scope="col">replica</th>
            <th scope="col">worker / device</th>
            <th scope="col">state</th>
            <th scope="col" class="num">
              queue
            </th>
            <th scope="col" class="num">
              in flight
            </th>
            <th scope="col">items/s</th>
            <th scope="col" title="latency of the replica's recent successful requests, arrival to answer (its heartbeat's window)">
              p99 latency
            </th>
            <th scope="col" class="num">
              answered
            </th>
            <th scope="col" class="num">
              failed
            </th>
            <th scope="col" class="num">
              memory
            </th>
          </tr>
        </thead>
        <tbody>
          {d.replicas.map((r) => (
            <tr key={r.id} data-replica={r.id}>
              <td>
                <code>{r.id}</code>
              </td>
              <td>
                {r.worker}/{r.device}
                {r.executionProvider && r.executionProvider !== r.device ? <span class="muted"> ({r.executionProvider})</span> : null}
              </td>
              <td>
                <span class={`state state-${r.state}`}>{r.state}</span>
                {r.error ? <span class="muted small"> {r.error.code}</span> : null}
              </td>
              <td class="num">{r.queueDepth}</td>
              <td class="num">{r.inFlight}</td>
              <td class="spark-cell" data-items-per-sec={r.itemsPerSec}>
                <Sparkline compact label={`items/s of ${r.id}`} unit="/s" points={r.series} value={(p) => p.itemsPerSec} color={color} />
              </td>
              <td
                class="spark-cell"
                data-p99-ms={r.latencyMs?.p99 ?? ''}
                title={
                  r.latencyMs
                    ? `p50 ${formatNumber(r.latencyMs.p50)} ms, p99 ${formatNumber(r.latencyMs.p99)} ms over ${r.latencyMs.count} requests`
                    : undefined
                }
              >
                <Sparkline compact label={`p99 latency of ${r.id}`} unit="ms" points={r.series} value={(p) => p.p99Ms} color="#b45309" />
                {r.latencyMs ? (
                  <span class="sr-only">
                    p50 {formatNumber(r.latencyMs.p50)} ms over its last {r.latencyMs.count} requests
                  </span>
                ) : null}
              </td>
              <td class="num">{formatNumber(r.processed)}</td>
              <td class="num">{formatNumber(r.failed)}</td>
              <td class="num">{r.bytes ? formatBytes(r.bytes) : '–'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </article>
  );
}

function Events(props: { snap: DashboardSnapshot; model: string; setModel: (m: string) => void }) {
  const { snap, model } = props;
  const models = useMemo(
    () => [...new Set(snap.events.flatMap((e) => (e.model ? [e.model] : [])).concat(snap.deployments.map((d) => d.name)))].sort(),
    [snap],
  );
  const rows = filterEvents(snap.events, model);
  return (
    <section id="events" aria-labelledby="events-h">
      <div class="section-h">
        <h2 id="events-h">Events</h2>
        <label>
          model{' '}
          <select
            value={model}
            onChange={(e) => {
              const m = (e.target as HTMLSelectElement).value;
              props.setModel(m);
              const u = new URL(location.href);
              if (m) u.searchParams.set('model', m);
              else u.searchParams.delete('model');
              history.replaceState(null, '', u);
            }}
          >
            <option value="">all models</option>
            {models.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </label>
        <span class="muted small" aria-live="polite">
          {rows.length} event{rows.length === 1 ? '' : 's'}
        </span>
      </div>
      <div class="card events-card">
        {rows.length === 0 ? (
          <p class="muted">No events{model ? ` of ${model}` : ''} yet.</p>
        ) : (
          <ol class="timeline">
            {rows.map((e, i) => (
              <li key={`${e.at}-${i}`} class={`ev ev-${e.type}`} data-event-type={e.type} data-event-model={e.model ?? ''}>
                <time dateTime={new Date(e.at).toISOString()}>{time(e.at)}</time>
                <span class={`evtype evtype-${e.type}`}>{e.type.replace(/_/g, ' ')}</span>
                <span class="evtext">{e.text}</span>
              </li>
            ))}
          </ol>
        )}
      </div>
    </section>
  );
}

function Profiles({ snap }: { snap: DashboardSnapshot }) {
  return (
    <section id="profiles" aria-labelledby="profiles-h">
      <h2 id="profiles-h">Profiles</h2>
      {snap.profileErrors.map((e) => (
        <p key={e.model} class="banner warn small">
          Profiles of {e.model} cannot be read: <code>{e.code}</code> {e.message}
        </p>
      ))}
      {snap.profiles.length === 0 ? (
        <p class="muted">No model has been profiled yet (profiles are measured on a model's first load).</p>
      ) : null}
      <div class="grid wide">
        {snap.profiles.map((p) => (
          <ProfileCard key={`${p.model}|${p.deviceClass}|${p.shape ?? ''}`} p={p} />
        ))}
      </div>
    </section>
  );
}

function ProfileCard({ p }: { p: ProfileView }) {
  const id = `p-${p.model}-${p.deviceClass}-${p.shape ?? ''}`.replace(/[^A-Za-z0-9_-]/g, '_');
  return (
    <article
      class="card profile"
      aria-labelledby={id}
      data-profile={p.model}
      data-profile-models={p.models.join(' ')}
      data-shape={p.shape ?? ''}
    >
      <header class="card-h">
        <h3 id={id}>
          <span class="swatch" style={{ background: modelColor(p.model) }} aria-hidden="true" />
          {p.model}
        </h3>
        <span class="muted small">
          {p.deviceClass}
          {p.shape ? ` · shape ${p.shape}` : ''}
        </span>
      </header>
      {p.models.length > 1 ? (
        <p class="muted small">Same model file as {p.models.filter((m) => m !== p.model).join(', ')}: one profile for all of them.</p>
      ) : null}
      {p.skipped ? (
        <p class="muted">Not profiled: {p.skipped}</p>
      ) : (
        <>
          <p class="small">
            <strong>chosen batch {p.chosenBatch}</strong>, queue delay {p.chosenQueueDelayMs} ms: {p.chosenReason}.{' '}
            <span class="muted">
              SLO p99 {p.latencySloMs} ms; sweep stopped: {p.stoppedBecause}; replica charge {formatBytes(p.replicaBytes)}.
            </span>
          </p>
          <ProfileChart p={p} />
          <details>
            <summary>Profile table ({p.points.length} batch sizes)</summary>
            <table class="points">
              <caption class="sr-only">
                items/s and latency of {p.model} per batch size; chosen batch {p.chosenBatch}
              </caption>
              <thead>
                <tr>
                  <th scope="col" class="num">
                    batch
                  </th>
                  <th scope="col" class="num">
                    items/s
                  </th>
                  <th scope="col" class="num">
                    p50 ms
                  </th>
                  <th scope="col" class="num">
                    p99 ms
                  </th>
                  <th scope="col" class="num">
                    peak memory
                  </th>
                </tr>
              </thead>
              <tbody>
                {p.points.map((pt) => (
                  <tr key={pt.batch} class={pt.batch === p.chosenBatch ? 'chosen' : ''}>
                    <td class="num">
                      {pt.batch}
                      {pt.batch === p.chosenBatch ? ' (chosen)' : ''}
                    </td>
                    <td class="num">{formatNumber(pt.itemsPerSec)}</td>
                    <td class="num">{formatNumber(pt.p50Ms)}</td>
                    <td class="num">{formatNumber(pt.p99Ms)}</td>
                    <td class="num">{formatBytes(pt.peakBytes)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
      {p.threads && (
        <table class="threads">
          <caption>
            Threads: <strong>{p.threads.chosen}</strong> <span class="muted">({p.threads.reason})</span>
          </caption>
          <thead>
            <tr>
              <th scope="col">setting</th>
              <th scope="col" class="num">
                batch
              </th>
              <th scope="col" class="num">
                items/s
              </th>
              <th scope="col" class="num">
                p99 ms
              </th>
            </tr>
          </thead>
          <tbody>
            {p.threads.rows.map((r) => (
              <tr key={r.setting} class={r.chosen ? 'chosen' : ''}>
                <td>
                  {r.setting}
                  {r.chosen ? ' (chosen)' : ''}
                </td>
                <td class="num">{r.batch}</td>
                <td class="num">{formatNumber(r.itemsPerSec)}</td>
                <td class="num">{formatNumber(r.p99Ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {p.compile && (
        <p class="small">
          Compile cache: <strong>{p.compile.helps ? 'helps' : 'does not help'}</strong> (create {formatNumber(p.compile.compiledCreateMs)}{' '}
          ms cached vs {formatNumber(p.compile.plainCreateMs)} ms plain): {p.compile.reason}
        </p>
      )}
    </article>
  );
}
