// The Kubernetes manifests (deploy/k8s) and the Dockerfile, checked without a cluster: every YAML
// file parses; each overlay is built the way kustomize builds it (and compared with `kubectl
// kustomize` where kubectl is installed); every object of every build is validated against the
// Kubernetes OpenAPI schemas of `kubernetes-models`, unknown fields included; and the objects
// refer to each other correctly (selectors, ConfigMaps, Secrets, ports, probes, NATS routes, GPU
// scheduling, CLI flags).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { parseFraction, parseSize } from '../../packages/cli/src/format.js';
import { WORKER_NODE_FLAGS } from '../../packages/worker/src/gc-mode.js';
import {
  ROLES,
  inboxPrefixFor,
  natsAuthConfig,
  seedFileRole,
  seedFromFileText,
  type Role,
} from '../../packages/protocol/src/permissions.js';

type Obj = Record<string, any>;

const ROOT = resolve(__dirname, '../..');
const K8S = __dirname;
const OVERLAYS = ['cpu', 'gpu', 'gpu-shared'] as const;
/** Applied on its own, in the GPU Operator's namespace: the device plugin's time-slicing for gpu-shared. */
const TIME_SLICING = join(K8S, 'overlays/gpu-shared/time-slicing');
const CLI = join(ROOT, 'packages/cli/dist/main.js');
const HEALTH_PORT = 8080;
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'RuntimeClass',
  'ClusterRole',
  'ClusterRoleBinding',
  'PriorityClass',
  'StorageClass',
  'PersistentVolume',
]);
const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet']);

// ---------- files ----------

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

function readDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: Obj[] = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${relative(ROOT, file)}: ${d.errors.map((e) => e.message).join('; ')}`);
    if (d.warnings.length) throw new Error(`${relative(ROOT, file)}: ${d.warnings.map((e) => e.message).join('; ')}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

// ---------- a small kustomize: resources, namespace, strategic-merge patches ----------

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);

/** List fields merged item by item (by this key) in a strategic merge patch; other lists are replaced. */
function mergeKey(field: string, items: Obj[]): string | undefined {
  if (['containers', 'initContainers', 'volumes', 'env', 'imagePullSecrets', 'volumeClaimTemplates'].includes(field)) return 'name';
  if (field === 'volumeMounts') return 'mountPath';
  if (field === 'ports') return items.some((i) => 'containerPort' in i) ? 'containerPort' : 'port';
  return undefined;
}

function strategicMerge(base: any, patch: any, field = ''): any {
  if (isObj(base) && isObj(patch)) {
    const out: Obj = { ...base };
    for (const [k, v] of Object.entries(patch)) {
      if (k === '$patch') throw new Error('$patch directives are not supported by this test');
      if (v === null) delete out[k];
      else out[k] = strategicMerge(base[k], v, k);
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch)) {
    const key = mergeKey(field, [...base, ...patch]);
    if (!key) return clone(patch);
    const out = base.map((b) => clone(b));
    for (const p of patch) {
      const i = out.findIndex((b) => b[key] === p[key]);
      if (i >= 0) out[i] = strategicMerge(out[i], p, '');
      else out.push(clone(p));
    }
    return out;
  }
  return clone(patch);
}

const id = (o: Obj) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

function kustomize(dir: string): Obj[] {
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  const supported = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'patches']);
  for (const field of Object.keys(k)) {
    if (!supported.has(field))
      throw new Error(`${relative(ROOT, dir)}/kustomization.yaml: '${field}' is not supported by this test's kustomize`);
  }
  expect(k.apiVersion).toBe('kustomize.config.k8s.io/v1beta1');
  expect(k.kind).toBe('Kustomization');
  let objs: Obj[] = [];
  for (const r of (k.resources ?? []) as string[]) {
    const p = resolve(dir, r);
    objs.push(...(statSync(p).isDirectory() ? kustomize(p) : readDocs(p)));
  }
  for (const patch of (k.patches ?? []) as Obj[]) {
    if (Object.keys(patch).join() !== 'path') throw new Error(`only {path} patches are supported, got ${JSON.stringify(patch)}`);
    for (const p of readDocs(resolve(dir, patch.path))) {
      const hits = objs.filter((o) => o.kind === p.kind && o.apiVersion === p.apiVersion && o.metadata?.name === p.metadata?.name);
      if (hits.length !== 1) throw new Error(`patch ${patch.path} matches ${hits.length} objects (${p.kind}/${p.metadata?.name})`);
      objs = objs.map((o) => (o === hits[0] ? strategicMerge(o, p) : o));
    }
  }
  if (k.namespace) {
    objs = objs.map((o) => (CLUSTER_SCOPED.has(o.kind) ? o : { ...o, metadata: { ...o.metadata, namespace: k.namespace } }));
  }
  const ids = objs.map(id);
  expect(ids.filter((x, i) => ids.indexOf(x) !== i)).toEqual([]);
  return objs;
}

/** Every file a kustomization in this tree names (resources and patches). */
function referencedFiles(dir: string, seen = new Set<string>()): Set<string> {
  const kfile = join(dir, 'kustomization.yaml');
  seen.add(kfile);
  const k = parse(readFileSync(kfile, 'utf8')) as Obj;
  for (const r of [...((k.resources ?? []) as string[]), ...((k.patches ?? []) as Obj[]).map((p) => p.path as string)]) {
    const p = resolve(dir, r);
    if (statSync(p).isDirectory()) referencedFiles(p, seen);
    else seen.add(p);
  }
  return seen;
}

// ---------- schema validation (kubernetes-models: the Kubernetes OpenAPI schemas, compiled) ----------

function modelClass(apiVersion: string, kind: string): any {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`);
  const cls = mod[kind];
  if (!cls) throw new Error(`no schema for ${apiVersion} ${kind}`);
  return cls;
}

/**
 * Schema errors of one object, plus its unknown fields. The schemas allow unknown fields (the API
 * server drops or rejects them), so the object is validated through a proxy that records every
 * field the validator reads: a field it never reads is not in the schema (a typo such as
 * `livenesProbe`). Maps (labels, data, resources) are iterated by the validator, so all their keys count.
 */
function validate(o: Obj): string[] {
  const read = new Set<string>();
  const track = (v: any, path: string): any =>
    v === null || typeof v !== 'object'
      ? v
      : new Proxy(v, {
          get(t, k, r) {
            if (typeof k !== 'string') return Reflect.get(t, k, r);
            read.add(`${path}/${k}`);
            return track(Reflect.get(t, k, r), `${path}/${k}`);
          },
        });
  const errors: string[] = [];
  try {
    modelClass(o.apiVersion, o.kind).prototype.validate.call(track(o, ''));
  } catch (err) {
    errors.push((err as Error).message);
  }
  const unknown = (v: any, path: string) => {
    if (v === null || typeof v !== 'object') return;
    for (const k of Object.keys(v)) {
      if (!read.has(`${path}/${k}`)) errors.push(`unknown field ${path}/${k}`);
      else unknown(v[k], `${path}/${k}`);
    }
  };
  unknown(o, '');
  return errors.map((e) => `${o.kind}/${o.metadata?.name}: ${e}`);
}

// ---------- helpers over a build ----------

interface Workload {
  obj: Obj;
  labels: Record<string, string>;
  pod: Obj;
}

function workloads(objs: Obj[]): Workload[] {
  return objs
    .filter((o) => WORKLOAD_KINDS.has(o.kind))
    .map((o) => ({ obj: o, labels: o.spec.template.metadata?.labels ?? {}, pod: o.spec.template.spec }));
}

function matchLabels(selector: Obj | undefined): Record<string, string> {
  if (!selector) return {};
  expect(selector.matchExpressions).toBeUndefined();
  return selector.matchLabels ?? selector;
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

const find = (objs: Obj[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);

function allContainers(pod: Obj): Obj[] {
  return [...(pod.initContainers ?? []), ...pod.containers];
}

/** Flotilla containers run the image's entrypoint, the `flotilla` command. */
const isFlotilla = (c: Obj) => /^flotilla(-gpu)?(:|@|$)/.test(c.image);

function argValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

/** Kubernetes quantity → bytes (memory) or cores (cpu). */
function quantity(q: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(q));
  if (!m) throw new Error(`bad quantity ${q}`);
  const unit: Record<string, number> = {
    '': 1,
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
  };
  return Number(m[1]) * unit[m[2] ?? '']!;
}

/** The few parts of a nats-server config these checks need. */
function natsConf(text: string) {
  const cluster = /\ncluster\s*\{([\s\S]*?)\n\}/.exec(`\n${text}`)?.[1] ?? '';
  const top = `\n${text}`.replace(/\n(cluster|jetstream|authorization)\s*\{[\s\S]*?\n\}/g, '');
  const port = (s: string | undefined) => (s ? Number(/(\d+)\s*$/.exec(s)![1]) : undefined);
  return {
    clientPort: port(/\n\s*(?:listen|port)\s*[:=]\s*(\S+)/.exec(top)?.[1]),
    httpPort: port(/\n\s*http_port\s*[:=]\s*(\S+)/.exec(top)?.[1]),
    clusterPort: port(/\n\s*(?:listen|port)\s*[:=]\s*(\S+)/.exec(`\n${cluster}`)?.[1]),
    routes: [...cluster.matchAll(/nats(?:-route)?:\/\/[^\s,\]]+/g)].map((m) => new URL(m[0])),
    storeDir: /\n\s*jetstream\s*\{[\s\S]*?store_dir\s*[:=]\s*(\S+)/.exec(`\n${text}`)?.[1],
    /** The role permissions and users: from the first `FLOTILLA_…_PERMISSIONS =` to the end of `authorization { … }`. */
    auth: /(# Flotilla roles[^\n]*\n[\s\S]*?\nauthorization \{[\s\S]*?\n\}\n)/.exec(text)?.[1],
    pidFile: /\n\s*pid_file\s*[:=]\s*(\S+)/.exec(top)?.[1],
  };
}

function natsServerBinary(): string | undefined {
  for (const p of [...(process.env.PATH ?? '').split(':').map((d) => join(d, 'nats-server')), '/usr/sbin/nats-server']) {
    if (p && existsSync(p)) return p;
  }
  return undefined;
}

function kubectlAvailable(): boolean {
  return spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
}

const helpCache = new Map<string, string>();
function cliHelp(command: string): string {
  if (!helpCache.has(command)) {
    const r = spawnSync(process.execPath, [CLI, command, '--help'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`flotilla ${command} --help failed: ${r.stderr}`);
    helpCache.set(command, r.stdout);
  }
  return helpCache.get(command)!;
}

// ---------- tests ----------

const builds = Object.fromEntries(OVERLAYS.map((o) => [o, kustomize(join(K8S, 'overlays', o))])) as Record<
  (typeof OVERLAYS)[number],
  Obj[]
>;

describe('deploy/k8s files', () => {
  const files = yamlFiles(K8S);

  it('every YAML file parses (no errors, no duplicate keys) and has content', () => {
    expect(files.length).toBeGreaterThanOrEqual(9);
    for (const f of files) expect(readDocs(f).length).toBeGreaterThan(0);
  });

  it('every YAML file is a kustomization or is used by one', () => {
    const used = new Set<string>();
    for (const dir of [...OVERLAYS.map((o) => join(K8S, 'overlays', o)), TIME_SLICING]) for (const f of referencedFiles(dir)) used.add(f);
    expect(files.filter((f) => !used.has(f)).map((f) => relative(ROOT, f))).toEqual([]);
  });

  it('every resource file holds Kubernetes objects with apiVersion, kind and name', () => {
    for (const f of files.filter((f) => !f.endsWith('kustomization.yaml'))) {
      for (const o of readDocs(f)) {
        expect([relative(ROOT, f), typeof o.apiVersion, typeof o.kind, typeof o.metadata?.name]).toEqual([
          relative(ROOT, f),
          'string',
          'string',
          'string',
        ]);
      }
    }
  });
});

describe.each(OVERLAYS)('overlay %s', (overlay) => {
  const objs = builds[overlay];
  const ws = workloads(objs);
  const flotillaContainers = ws.flatMap((w) => w.pod.containers.filter(isFlotilla).map((c: Obj) => ({ w, c })));

  (kubectlAvailable() ? it : it.skip)('builds to the same objects as `kubectl kustomize`', () => {
    const r = spawnSync('kubectl', ['kustomize', join(K8S, 'overlays', overlay)], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const theirs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
    const byId = (list: Obj[]) => Object.fromEntries(list.map((o) => [id(o), o]));
    expect(byId(objs)).toEqual(byId(theirs));
  });

  it('every object is valid against the Kubernetes schemas, with no unknown fields', () => {
    expect(objs.flatMap(validate)).toEqual([]);
  });

  it('has the namespace, settings, NATS, head and workers', () => {
    for (const [kind, name] of [
      ['Namespace', 'flotilla'],
      ['ConfigMap', 'flotilla-config'],
      ...ROLES.map((r) => ['Secret', `flotilla-nkey-${r}`]),
      ['ConfigMap', 'nats-config'],
      ['StatefulSet', 'nats'],
      ['Service', 'nats'],
      ['Service', 'nats-headless'],
      ['PodDisruptionBudget', 'nats'],
      ['Deployment', 'flotilla-head'],
      ['PodDisruptionBudget', 'flotilla-head'],
      ['Deployment', 'flotilla-worker-cpu'],
      ['PodDisruptionBudget', 'flotilla-worker-cpu'],
    ]) {
      expect([kind, name, find(objs, kind!, name!) !== undefined]).toEqual([kind, name, true]);
    }
    for (const o of objs.filter((o) => !CLUSTER_SCOPED.has(o.kind))) expect([id(o), o.metadata.namespace]).toEqual([id(o), 'flotilla']);
    const cm = find(objs, 'ConfigMap', 'flotilla-config')!;
    expect(Object.keys(cm.data).sort()).toEqual(expect.arrayContaining(['FLOTILLA_CLUSTER', 'FLOTILLA_LOG_LEVEL', 'FLOTILLA_NATS']));
    expect(cm.data.FLOTILLA_NATS).toBe('nats://nats:4222');
    // Every bucket keeps one copy per NATS node: losing a node loses no state, model or profile.
    expect(Number(cm.data.FLOTILLA_STORE_REPLICAS)).toBe(find(objs, 'StatefulSet', 'nats')!.spec.replicas);
    // No shared token any more: one nkey user per role.
    expect(
      objs
        .filter((o) => o.kind === 'Secret')
        .map((o) => o.metadata.name)
        .sort(),
    ).toEqual(ROLES.map((r) => `flotilla-nkey-${r}`).sort());
    for (const r of ROLES) expect(Object.keys(find(objs, 'Secret', `flotilla-nkey-${r}`)!.stringData).sort()).toEqual(['public', 'seed']);
    expect(JSON.stringify(objs)).not.toMatch(/TOKEN|"token"/);
  });

  it('workload selectors select their own pods and no other workload’s', () => {
    for (const w of ws) {
      const sel = matchLabels(w.obj.spec.selector);
      expect([w.obj.metadata.name, matches(sel, w.labels)]).toEqual([w.obj.metadata.name, true]);
      for (const other of ws.filter((x) => x !== w)) {
        expect([w.obj.metadata.name, other.obj.metadata.name, matches(sel, other.labels)]).toEqual([
          w.obj.metadata.name,
          other.obj.metadata.name,
          false,
        ]);
      }
    }
  });

  it('every Service selects pods, and its target ports exist on them', () => {
    for (const svc of objs.filter((o) => o.kind === 'Service')) {
      const pods = ws.filter((w) => matches(svc.spec.selector ?? {}, w.labels));
      expect([svc.metadata.name, pods.length > 0]).toEqual([svc.metadata.name, true]);
      for (const w of pods) {
        const ports = w.pod.containers.flatMap((c: Obj) => c.ports ?? []);
        for (const p of svc.spec.ports) {
          const target = p.targetPort ?? p.port;
          const ok = ports.some((cp: Obj) => (typeof target === 'string' ? cp.name === target : cp.containerPort === target));
          expect([svc.metadata.name, p.name, ok]).toEqual([svc.metadata.name, p.name, true]);
        }
      }
    }
  });

  it('every PodDisruptionBudget selects exactly one workload', () => {
    for (const pdb of objs.filter((o) => o.kind === 'PodDisruptionBudget')) {
      const sel = matchLabels(pdb.spec.selector);
      expect([pdb.metadata.name, ws.filter((w) => matches(sel, w.labels)).length]).toEqual([pdb.metadata.name, 1]);
    }
  });

  it('every ConfigMap and Secret referred to (envFrom, env, volumes) exists in the build, with the keys used', () => {
    const refs: Array<{ kind: string; name: string; key?: string; optional?: boolean; where: string }> = [];
    for (const w of ws) {
      const where = w.obj.metadata.name;
      for (const c of allContainers(w.pod)) {
        for (const e of c.envFrom ?? []) {
          if (e.configMapRef) refs.push({ kind: 'ConfigMap', ...e.configMapRef, where });
          if (e.secretRef) refs.push({ kind: 'Secret', ...e.secretRef, where });
        }
        for (const e of c.env ?? []) {
          if (e.valueFrom?.configMapKeyRef) refs.push({ kind: 'ConfigMap', ...e.valueFrom.configMapKeyRef, where });
          if (e.valueFrom?.secretKeyRef) refs.push({ kind: 'Secret', ...e.valueFrom.secretKeyRef, where });
        }
      }
      for (const v of w.pod.volumes ?? []) {
        if (v.configMap) refs.push({ kind: 'ConfigMap', name: v.configMap.name, optional: v.configMap.optional, where });
        if (v.secret) refs.push({ kind: 'Secret', name: v.secret.secretName, optional: v.secret.optional, where });
        for (const item of v.configMap?.items ?? []) refs.push({ kind: 'ConfigMap', name: v.configMap.name, key: item.key, where });
        for (const item of v.secret?.items ?? []) refs.push({ kind: 'Secret', name: v.secret.secretName, key: item.key, where });
      }
    }
    expect(refs.length).toBeGreaterThan(0);
    for (const r of refs.filter((r) => !r.optional)) {
      const target = find(objs, r.kind, r.name);
      expect([r.where, r.kind, r.name, target !== undefined]).toEqual([r.where, r.kind, r.name, true]);
      if (r.key)
        expect([r.where, r.name, Object.keys({ ...target!.data, ...target!.stringData })]).toEqual([
          r.where,
          r.name,
          expect.arrayContaining([r.key]),
        ]);
    }
  });

  it('every volume mount has a volume or volume claim template; every probe port is a container port', () => {
    for (const w of ws) {
      const volumes = new Set(
        [...(w.pod.volumes ?? []), ...(w.obj.spec.volumeClaimTemplates ?? []).map((t: Obj) => t.metadata)].map((v: Obj) => v.name),
      );
      for (const c of allContainers(w.pod)) {
        for (const m of c.volumeMounts ?? [])
          expect([w.obj.metadata.name, m.name, volumes.has(m.name)]).toEqual([w.obj.metadata.name, m.name, true]);
        for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
          const handler = c[probe]?.httpGet ?? c[probe]?.tcpSocket ?? c[probe]?.grpc;
          if (!handler) continue;
          const ok = (c.ports ?? []).some((p: Obj) =>
            typeof handler.port === 'string' ? p.name === handler.port : p.containerPort === handler.port,
          );
          expect([w.obj.metadata.name, c.name, probe, handler.port, ok]).toEqual([w.obj.metadata.name, c.name, probe, handler.port, true]);
        }
      }
    }
  });

  it('every container has CPU and memory requests and a memory limit, and runs as non-root', () => {
    for (const w of ws) {
      expect([w.obj.metadata.name, w.pod.securityContext?.runAsNonRoot]).toEqual([w.obj.metadata.name, true]);
      for (const c of allContainers(w.pod)) {
        const r = c.resources ?? {};
        expect([w.obj.metadata.name, c.name, !!r.requests?.cpu, !!r.requests?.memory, !!r.limits?.memory]).toEqual([
          w.obj.metadata.name,
          c.name,
          true,
          true,
          true,
        ]);
        expect(quantity(r.requests.memory)).toBeLessThanOrEqual(quantity(r.limits.memory));
        expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
      }
    }
  });

  it('Flotilla containers serve /livez and /readyz on the named port `health` (8080) given to --health-port', () => {
    expect(flotillaContainers.length).toBeGreaterThanOrEqual(2);
    for (const { w, c } of flotillaContainers) {
      const name = `${w.obj.metadata.name}/${c.name}`;
      expect([name, c.ports]).toEqual([name, [{ name: 'health', containerPort: HEALTH_PORT }]]);
      expect([name, argValue(c.args, '--health-port')]).toEqual([name, String(HEALTH_PORT)]);
      expect([name, c.livenessProbe.httpGet]).toEqual([name, { path: '/livez', port: 'health' }]);
      expect([name, c.readinessProbe.httpGet]).toEqual([name, { path: '/readyz', port: 'health' }]);
      expect([name, c.startupProbe?.httpGet]).toEqual([name, { path: '/livez', port: 'health' }]);
    }
  });

  it('Flotilla containers run a flotilla command with flags the CLI has', () => {
    expect(existsSync(CLI)).toBe(true); // `pnpm build` first (`pnpm test` does)
    for (const { w, c } of flotillaContainers) {
      expect(c.command).toBeUndefined(); // the image's ENTRYPOINT is the flotilla command
      const [command, ...rest] = c.args as string[];
      expect(['head', 'worker']).toContain(command);
      const help = cliHelp(command!);
      for (const flag of rest.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!)) {
        expect([w.obj.metadata.name, flag, new RegExp(`\\s${flag}[\\s,]`).test(help)]).toEqual([w.obj.metadata.name, flag, true]);
      }
    }
  });

  it('Flotilla containers get the settings ConfigMap and their role’s seed file; nats-server the same Secret’s public key', () => {
    const nats = find(objs, 'StatefulSet', 'nats')!;
    const natsEnv = nats.spec.template.spec.containers[0].env as Obj[];
    for (const r of ROLES) {
      const ref = natsEnv.find((e) => e.name === `FLOTILLA_${r.toUpperCase()}_NKEY`)?.valueFrom?.secretKeyRef;
      expect([r, ref]).toEqual([r, { name: `flotilla-nkey-${r}`, key: 'public' }]);
    }
    for (const { w, c } of flotillaContainers) {
      const name = w.obj.metadata.name;
      const role = c.args[0] as Role; // `head` or `worker`: the command is the role
      expect([name, c.envFrom]).toEqual([name, expect.arrayContaining([{ configMapRef: { name: 'flotilla-config' } }])]);
      const file = (c.env as Obj[]).find((e) => e.name === 'FLOTILLA_NATS_NKEY')?.value as string;
      const mount = (c.volumeMounts as Obj[]).find((m) => file?.startsWith(`${m.mountPath}/`));
      expect([name, mount?.readOnly]).toEqual([name, true]);
      const volume = (w.pod.volumes as Obj[]).find((v) => v.name === mount!.name)!;
      expect([name, volume.secret.secretName]).toEqual([name, `flotilla-nkey-${role}`]);
      const item = (volume.secret.items as Obj[]).find((i) => `${mount!.mountPath}/${i.path}` === file);
      expect([name, item?.key]).toEqual([name, 'seed']);
      // Readable by the pod's group (fsGroup), by no one else; the file name and the seed name the role.
      expect([name, volume.secret.defaultMode & 0o007, w.pod.securityContext.fsGroup]).toEqual([name, 0, w.pod.securityContext.runAsGroup]);
      const seedText = find(objs, 'Secret', `flotilla-nkey-${role}`)!.stringData.seed as string;
      expect([name, seedFileRole(seedText, item!.path), seedFileRole('', item!.path)]).toEqual([name, role, role]);
    }
  });

  it('each role’s Secret holds a seed and the public key that seed signs with', () => {
    // @nats-io/nkeys is a dependency of the CLI (auth init).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nkeys = require(require.resolve('@nats-io/nkeys', { paths: [join(ROOT, 'packages/cli')] }));
    for (const r of ROLES) {
      const { seed, public: pub } = find(objs, 'Secret', `flotilla-nkey-${r}`)!.stringData;
      expect([r, nkeys.fromSeed(new TextEncoder().encode(seedFromFileText(seed))).getPublicKey()]).toEqual([r, pub]);
      expect(inboxPrefixFor(r)).toBe(`_INBOX_${r}`);
    }
  });

  it('the NATS config’s role permissions are the ones @flotilla/protocol generates for FLOTILLA_CLUSTER', () => {
    const conf = natsConf(find(objs, 'ConfigMap', 'nats-config')!.data['nats.conf']);
    const cluster = find(objs, 'ConfigMap', 'flotilla-config')!.data.FLOTILLA_CLUSTER;
    const roles: Role[] = ['head', 'worker', 'operator', 'caller'];
    const expected = natsAuthConfig(
      roles.map((r) => ({ role: r, nkeyPublic: `$FLOTILLA_${r.toUpperCase()}_NKEY` })),
      cluster,
    );
    // To regenerate after a change to permissions.ts: paste `expected` (indented 4 spaces) into base/nats.yaml.
    expect(conf.auth).toBe(expected);
  });

  it('FLOTILLA_NATS points at the client port of the NATS Service', () => {
    const url = new URL(find(objs, 'ConfigMap', 'flotilla-config')!.data.FLOTILLA_NATS);
    const svc = find(objs, 'Service', url.hostname.split('.')[0]!)!;
    expect(svc).toBeDefined();
    const port = svc.spec.ports.find((p: Obj) => p.port === Number(url.port));
    expect(port).toBeDefined();
    const nats = find(objs, 'StatefulSet', 'nats')!;
    expect(matches(svc.spec.selector, nats.spec.template.metadata.labels)).toBe(true);
    const containerPort = nats.spec.template.spec.containers[0].ports.find((p: Obj) => p.name === port.targetPort);
    const conf = natsConf(find(objs, 'ConfigMap', 'nats-config')!.data['nats.conf']);
    expect(containerPort.containerPort).toBe(conf.clientPort);
  });

  it('NATS: 3 nodes with volumes, routes to every node through the headless Service, JetStream on the volume', () => {
    const sts = find(objs, 'StatefulSet', 'nats')!;
    const headless = find(objs, 'Service', 'nats-headless')!;
    const pod = sts.spec.template.spec;
    const container = pod.containers[0];
    const confMap = find(objs, 'ConfigMap', 'nats-config')!;
    const conf = natsConf(confMap.data['nats.conf']);

    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.serviceName).toBe('nats-headless');
    expect(sts.spec.volumeClaimTemplates).toHaveLength(1);
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(matches(headless.spec.selector, sts.spec.template.metadata.labels)).toBe(true);

    // Routes: nats://nats-<i>.nats-headless:<cluster port>, one per replica.
    const clusterPort = container.ports.find((p: Obj) => p.containerPort === conf.clusterPort);
    expect(clusterPort).toBeDefined();
    expect(headless.spec.ports.find((p: Obj) => p.port === conf.clusterPort && p.targetPort === clusterPort.name)).toBeDefined();
    const hosts = conf.routes.map((u) => u.hostname).sort();
    expect(hosts).toEqual(Array.from({ length: sts.spec.replicas }, (_, i) => `${sts.metadata.name}-${i}.${headless.metadata.name}`));
    for (const u of conf.routes) expect(Number(u.port)).toBe(conf.clusterPort);

    // Monitor port = http_port, used by the probes.
    const monitor = container.ports.find((p: Obj) => p.name === 'monitor');
    expect(monitor.containerPort).toBe(conf.httpPort);
    expect(container.livenessProbe.httpGet.port).toBe('monitor');

    // The config file is the mounted ConfigMap; JetStream stores on the claimed volume; the pid file
    // (used by the preStop lame-duck signal) is on a mounted volume.
    const configVolume = pod.volumes.find((v: Obj) => v.configMap?.name === 'nats-config');
    const configMount = container.volumeMounts.find((m: Obj) => m.name === configVolume.name);
    const configArg = [...(container.command ?? []), ...(container.args ?? [])];
    expect(argValue(configArg, '--config')).toBe(`${configMount.mountPath}/nats.conf`);
    const dataMount = container.volumeMounts.find((m: Obj) => m.name === sts.spec.volumeClaimTemplates[0].metadata.name);
    expect(conf.storeDir === dataMount.mountPath || conf.storeDir!.startsWith(`${dataMount.mountPath}/`)).toBe(true);
    expect(container.volumeMounts.some((m: Obj) => conf.pidFile!.startsWith(`${m.mountPath}/`))).toBe(true);
    expect(container.lifecycle.preStop.exec.command.join(' ')).toContain(`ldm=${conf.pidFile}`);
  });

  (natsServerBinary() ? it : it.skip)('nats-server accepts the NATS config (nats-server -t)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-k8s-'));
    try {
      const file = join(dir, 'nats.conf');
      writeFileSync(file, find(objs, 'ConfigMap', 'nats-config')!.data['nats.conf']);
      const nkeyEnv = Object.fromEntries(
        ROLES.map((r) => [`FLOTILLA_${r.toUpperCase()}_NKEY`, find(objs, 'Secret', `flotilla-nkey-${r}`)!.stringData.public]),
      );
      const r = spawnSync(natsServerBinary()!, ['-c', file, '-t'], {
        encoding: 'utf8',
        env: { ...process.env, SERVER_NAME: 'nats-0', ...nkeyEnv },
      });
      expect(`${r.stdout}${r.stderr}`).toContain('is valid');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('workers drain on SIGTERM within their grace period (≥ 30 s); the head gets 30 s', () => {
    const head = find(objs, 'Deployment', 'flotilla-head')!;
    // Two heads (leader + standby, a KV lease between them), rolling one at a time, on different nodes.
    expect(head.spec.replicas).toBe(2);
    expect(head.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
    const anti = head.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
    expect(anti.topologyKey).toBe('kubernetes.io/hostname');
    expect(matches(matchLabels(anti.labelSelector), head.spec.template.metadata.labels)).toBe(true);
    const pdb = find(objs, 'PodDisruptionBudget', 'flotilla-head')!;
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(matches(matchLabels(pdb.spec.selector), head.spec.template.metadata.labels)).toBe(true);
    expect(head.spec.template.spec.terminationGracePeriodSeconds).toBe(30);
    expect(head.spec.template.spec.containers[0].args[0]).toBe('head');
    const workers = flotillaContainers.filter(({ c }) => c.args[0] === 'worker');
    expect(workers.length).toBeGreaterThanOrEqual(overlay === 'cpu' ? 1 : 2);
    for (const { w } of workers)
      expect([w.obj.metadata.name, w.pod.terminationGracePeriodSeconds >= 30]).toEqual([w.obj.metadata.name, true]);
  });

  it('every worker’s --memory-budget fits in its container’s memory limit', () => {
    for (const { w, c } of flotillaContainers.filter(({ c }) => c.args[0] === 'worker')) {
      const budget = argValue(c.args, '--memory-budget');
      expect([w.obj.metadata.name, budget !== undefined]).toEqual([w.obj.metadata.name, true]);
      const limit = quantity(c.resources.limits.memory);
      expect([w.obj.metadata.name, parseSize(budget!) <= 0.8 * limit]).toEqual([w.obj.metadata.name, true]);
      expect([w.obj.metadata.name, c.env.find((e: Obj) => e.name === 'FLOTILLA_CACHE_DIR')?.value]).toEqual([
        w.obj.metadata.name,
        '/var/cache/flotilla',
      ]);
    }
  });

  if (overlay === 'cpu') {
    it('runs CPU workers and no GPU workers', () => {
      expect(find(objs, 'Deployment', 'flotilla-worker-cpu')!.spec.replicas).toBeGreaterThanOrEqual(1);
      expect(find(objs, 'DaemonSet', 'flotilla-worker-gpu')).toBeUndefined();
      expect(JSON.stringify(objs)).not.toContain('nvidia.com/gpu');
    });
  } else if (overlay === 'gpu') {
    it('runs one GPU worker per GPU node (nvidia.com/gpu, nvidia runtime, CUDA provider) and scales CPU workers to 0', () => {
      expect(find(objs, 'Deployment', 'flotilla-worker-cpu')!.spec.replicas).toBe(0);
      const ds = find(objs, 'DaemonSet', 'flotilla-worker-gpu')!;
      expect(ds).toBeDefined();
      const pod = ds.spec.template.spec;
      const c = pod.containers[0];
      expect(pod.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
      expect(pod.tolerations).toEqual(expect.arrayContaining([expect.objectContaining({ key: 'nvidia.com/gpu', effect: 'NoSchedule' })]));
      expect(pod.runtimeClassName).toBe('nvidia');
      expect(quantity(c.resources.limits['nvidia.com/gpu'])).toBeGreaterThanOrEqual(1);
      expect(c.image).toMatch(/^flotilla-gpu/);
      expect(c.args[0]).toBe('worker');
      expect(argValue(c.args, '--gpu-providers')).toBe('cuda');
      // Only the GPU DaemonSet asks for GPUs.
      const gpuUsers = workloads(objs).filter((w) =>
        JSON.stringify(w.pod.containers.map((x: Obj) => x.resources)).includes('nvidia.com/gpu'),
      );
      expect(gpuUsers.map((w) => w.obj.metadata.name)).toEqual(['flotilla-worker-gpu']);
    });
  } else {
    it('runs N GPU workers per GPU (time-slicing replicas N), each with --gpu-share 1/N and 1/N of what the GPU overlay gives one', () => {
      const slicing = kustomize(TIME_SLICING);
      const config = parse(find(slicing, 'ConfigMap', 'flotilla-time-slicing')!.data.any) as Obj;
      const shared = config.sharing.timeSlicing;
      expect(shared.failRequestsGreaterThanOne).toBe(true);
      expect(shared.resources).toHaveLength(1);
      expect(shared.resources[0].name).toBe('nvidia.com/gpu');
      const n = shared.resources[0].replicas as number;
      expect(n).toBeGreaterThanOrEqual(2);

      const d = find(objs, 'Deployment', 'flotilla-worker-gpu-shared')!;
      const pod = d.spec.template.spec;
      const c = pod.containers[0];
      expect(c.args[0]).toBe('worker');
      expect(argValue(c.args, '--gpu-providers')).toBe('cuda');
      expect(parseFraction(argValue(c.args, '--gpu-share')!)).toBeCloseTo(1 / n, 9);
      expect(d.spec.replicas % n).toBe(0); // whole GPUs' worth of slices
      expect(d.spec.strategy.rollingUpdate.maxSurge).toBe(0); // no spare slice to surge into
      for (const r of ['requests', 'limits']) expect(quantity(c.resources[r]['nvidia.com/gpu'])).toBe(1); // failRequestsGreaterThanOne
      expect(pod.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
      expect(pod.runtimeClassName).toBe('nvidia');
      expect(pod.topologySpreadConstraints[0]).toMatchObject({ topologyKey: 'kubernetes.io/hostname', maxSkew: 1 });
      expect(matches(matchLabels(pod.topologySpreadConstraints[0].labelSelector), d.spec.template.metadata.labels)).toBe(true);
      // The N workers of one GPU together: the one GPU worker's budget, CPU and memory.
      const one = find(builds.gpu, 'DaemonSet', 'flotilla-worker-gpu')!.spec.template.spec.containers[0];
      expect(n * parseSize(argValue(c.args, '--memory-budget')!)).toBeLessThanOrEqual(parseSize(argValue(one.args, '--memory-budget')!));
      for (const r of ['requests', 'limits'] as const)
        for (const k of ['cpu', 'memory']) expect([r, k, n * quantity(c.resources[r][k])]).toEqual([r, k, quantity(one.resources[r][k])]);
      const pdb = find(objs, 'PodDisruptionBudget', 'flotilla-worker-gpu-shared')!;
      expect(matches(matchLabels(pdb.spec.selector), d.spec.template.metadata.labels)).toBe(true);
      expect(find(objs, 'DaemonSet', 'flotilla-worker-gpu')).toBeUndefined();
    });

    it('the time-slicing config is a valid ConfigMap in the GPU Operator namespace, named as the README patches it', () => {
      const slicing = kustomize(TIME_SLICING);
      expect(slicing.map(id)).toEqual(['ConfigMap/gpu-operator/flotilla-time-slicing']);
      expect(slicing.flatMap(validate)).toEqual([]);
      const readme = readFileSync(join(K8S, 'README.md'), 'utf8');
      expect(readme).toContain('"config":{"name":"flotilla-time-slicing","default":"any"}');
    });
  }
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const lines = dockerfile.split('\n').filter((l) => !l.trimStart().startsWith('#'));
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { packageManager: string; scripts: Record<string, string> };

  it('builds on node:20-bookworm-slim with the workspace’s pnpm, a frozen lockfile and `pnpm build`', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(dockerfile).toMatch(/^FROM \$\{NODE_IMAGE\} AS build$/m);
    const pnpmVersion = /^ARG PNPM_VERSION=(\S+)$/m.exec(dockerfile)?.[1];
    expect(`pnpm@${pnpmVersion}`).toBe(pkg.packageManager);
    expect(dockerfile).toContain('npm install -g "pnpm@${PNPM_VERSION}"');
    expect(dockerfile).toMatch(/pnpm install --frozen-lockfile/);
    expect(dockerfile).toMatch(/pnpm build/);
    expect(lines.join('\n')).not.toMatch(/apt-get install[^\n]*nats-server/); // NATS runs as its own StatefulSet
  });

  it('has a default CPU target and a gpu target, both starting the flotilla CLI as uid 1000', () => {
    const stages = [...dockerfile.matchAll(/^FROM (\S+) AS (\S+)$/gm)].map((m) => m[2]);
    expect(stages).toEqual(['build', 'ort-gpu', 'build-gpu', 'gpu', 'runtime']);
    const entrypoints = lines.filter((l) => l.startsWith('ENTRYPOINT'));
    // Worker processes run V8's single-threaded collector (packages/worker/src/gc-mode.ts says why).
    const entry = `ENTRYPOINT ${JSON.stringify(['node', ...WORKER_NODE_FLAGS, 'packages/cli/dist/main.js']).replaceAll(',', ', ')}`;
    expect(entrypoints).toEqual([entry, entry]);
    // So do the CLI's shebang and `pnpm flotilla`.
    const shebang = readFileSync(join(ROOT, 'packages/cli/src/main.ts'), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${WORKER_NODE_FLAGS.join(' ')}`);
    expect(pkg.scripts.flotilla).toBe(`node ${WORKER_NODE_FLAGS.join(' ')} packages/cli/dist/main.js`);
    expect(lines.filter((l) => l.startsWith('USER'))).toEqual(['USER 1000:1000', 'USER node']);
    // The manifests' images are these two targets.
    const images = new Set(
      Object.values(builds).flatMap((objs) => workloads(objs).flatMap((w) => w.pod.containers.filter(isFlotilla).map((c: Obj) => c.image))),
    );
    expect([...images].sort()).toEqual(['flotilla', 'flotilla-gpu']);
  });

  it('.dockerignore keeps dependencies, build output, caches and git out of the context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['node_modules', 'dist', '.cache', '.git']) expect(ignored).toContain(entry);
    // The build needs these.
    for (const needed of ['pnpm-lock.yaml', 'package.json', 'pnpm-workspace.yaml', 'packages']) expect(ignored).not.toContain(needed);
  });
});

describe('deploy/k8s/README.md', () => {
  it('walks through image, secret, apply, deploy and status with the names the manifests use', () => {
    const readme = readFileSync(join(K8S, 'README.md'), 'utf8');
    for (const text of [
      'docker build',
      '--target gpu',
      'flotilla auth init',
      'flotilla-nkey-head',
      'flotilla-nkey-worker',
      '--nkey',
      'kubectl apply -k',
      'overlays/gpu',
      'flotilla deploy',
      'flotilla status',
      'port-forward',
      'kubectl run',
    ]) {
      expect([text, readme.includes(text)]).toEqual([text, true]);
    }
  });
});
