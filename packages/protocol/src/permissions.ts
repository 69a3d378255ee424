// Who may do what on the bus, as nats-server permissions: four roles (caller, operator, worker,
// head), each an allow list of the subjects it publishes and subscribes to, JetStream API and
// bucket subjects included, so the server refuses everything else (FORBIDDEN), whatever our code
// does. Pure: `flotilla auth init` writes the config text, devkit and the k8s manifests reuse it.
// The lists are what nats.js 3.4 needs against nats-server 2.9 (traced, see docs/security.md).
import { BadRequestError } from './errors.js';
import { CONTROL_OPS, DEFAULT_CLUSTER, REPLICA_QUEUE, subjects, type ControlOp } from './subjects.js';

export const ROLES = ['caller', 'operator', 'worker', 'head'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(x: unknown): x is Role {
  return typeof x === 'string' && (ROLES as readonly string[]).includes(x);
}

/** Control operations that only read (or ask the head to bring a model back): callers may send them. */
export const READ_CONTROL_OPS: readonly ControlOp[] = ['list', 'describe', 'status', 'events', 'ensure'];
/** Control operations that change the cluster: operators only. */
export const WRITE_CONTROL_OPS: readonly ControlOp[] = CONTROL_OPS.filter((op) => !READ_CONTROL_OPS.includes(op));

/** Queue group of a replica's own-subject endpoint: the NATS micro service library's default. */
export const SERVICE_QUEUE = 'q';

export interface PermissionList {
  allow: string[];
  deny?: string[];
}

export interface RolePermissions {
  publish: PermissionList;
  subscribe: PermissionList;
  /** May reply (once) to the reply subject of a message it received, without publish rights on it. */
  allowResponses?: boolean;
}

/**
 * The inbox prefix of a role: each role gets replies (and JetStream deliveries) under its own
 * prefix and may subscribe only there, so no role can read another's replies.
 */
export function inboxPrefixFor(role: Role): string {
  return `_INBOX_${role}`;
}

/** The subjects that serve one JetStream stream: the JS API calls on it, by what the role may do. */
function streamApi(
  stream: string,
  ops: { create?: boolean; read?: boolean; consume?: boolean; pull?: boolean; purge?: boolean },
): string[] {
  const api = '$JS.API';
  const out = [`${api}.STREAM.INFO.${stream}`];
  if (ops.create) out.push(`${api}.STREAM.CREATE.${stream}`);
  if (ops.read) out.push(`${api}.STREAM.MSG.GET.${stream}`, `${api}.DIRECT.GET.${stream}`, `${api}.DIRECT.GET.${stream}.>`);
  if (ops.consume || ops.pull) {
    // 2.9 names the consumer and its filter in the subject: CONSUMER.CREATE.<stream>.<name>.<filter>.
    out.push(
      `${api}.CONSUMER.CREATE.${stream}`,
      `${api}.CONSUMER.CREATE.${stream}.>`,
      `${api}.CONSUMER.INFO.${stream}.*`,
      `${api}.CONSUMER.DELETE.${stream}.*`,
    );
    // Ordered push consumers (KV watch/keys, object reads) answer the server's flow control.
    out.push(`$JS.FC.${stream}.>`);
  }
  if (ops.pull) out.push(`${api}.CONSUMER.MSG.NEXT.${stream}.*`);
  if (ops.purge) out.push(`${api}.STREAM.PURGE.${stream}`);
  return out;
}

const kvStream = (bucket: string) => `KV_${bucket}`;
/** The JetStream stream behind an object-store bucket (its chunks and metas). */
export const objStream = (bucket: string): string => `OBJ_${bucket}`;

/** A role's permissions in one cluster (its subjects, buckets and streams only). */
export function rolePermissions(role: Role, cluster: string = DEFAULT_CLUSTER): RolePermissions {
  if (!isRole(role)) throw new BadRequestError(`unknown role ${JSON.stringify(role)}: use one of ${ROLES.join(', ')}`);
  const s = subjects(cluster);
  const p = `flotilla.${s.cluster}`;
  const inbox = `${inboxPrefixFor(role)}.>`;
  const blobs = [...streamApi(objStream(s.blobBucket), { create: true, read: true, consume: true, purge: true }), `$O.${s.blobBucket}.>`];
  const profilesRead = [...streamApi(kvStream(s.profileBucket), { read: true, consume: true })];
  const caller: RolePermissions = {
    publish: {
      allow: [`${p}.infer.>`, ...READ_CONTROL_OPS.map((op) => s.control(op)), '$JS.API.INFO', ...profilesRead, ...blobs],
    },
    subscribe: { allow: [inbox] },
  };
  switch (role) {
    case 'caller':
      return caller;
    case 'operator': {
      return {
        publish: {
          allow: [
            ...caller.publish.allow,
            ...WRITE_CONTROL_OPS.map((op) => s.control(op)),
            // deploy uploads the ONNX file (a re-upload of a changed object purges its old chunks).
            ...streamApi(objStream(s.modelBucket), { read: true, purge: true }),
            `$O.${s.modelBucket}.>`,
            // batch jobs: their records, result stream and store of large results.
            ...streamApi(kvStream(s.jobBucket), { create: true, read: true, consume: true }),
            `$KV.${s.jobBucket}.>`,
            ...streamApi(s.jobStream, { create: true, pull: true }),
            s.jobResultsAll,
            ...streamApi(objStream(s.jobObjectBucket), { create: true, read: true, consume: true, purge: true }),
            `$O.${s.jobObjectBucket}.>`,
          ],
        },
        subscribe: { allow: [inbox] },
      };
    }
    case 'worker':
      return {
        publish: {
          allow: [
            s.heartbeatAll,
            s.eventAll,
            '$JS.API.INFO',
            ...streamApi(objStream(s.modelBucket), { read: true, consume: true }),
            ...streamApi(kvStream(s.profileBucket), { create: true, read: true, consume: true }),
            `$KV.${s.profileBucket}.>`,
            ...blobs,
          ],
        },
        subscribe: {
          allow: [
            // Only as a member of the replicas' queue groups: a worker cannot listen to all requests
            // beside the replicas (it can still take a share of them as one; see docs/security.md).
            `${p}.infer.* ${REPLICA_QUEUE}`,
            `${p}.infer.*.* ${SERVICE_QUEUE}`,
            s.worker('*', 'load'),
            s.worker('*', 'unload'),
            '$SRV.>',
            inbox,
          ],
        },
        allowResponses: true,
      };
    case 'head':
      return {
        publish: {
          allow: [
            s.worker('*', 'load'),
            s.worker('*', 'unload'),
            s.event('scaled'),
            // Each head's presence (leader and standbys), so the leader lists the standbys in status.
            s.headPresenceAll,
            '$JS.API.INFO',
            ...streamApi(kvStream(s.stateBucket), { create: true, read: true, consume: true }),
            `$KV.${s.stateBucket}.>`,
            ...streamApi(kvStream(s.leaseBucket), { create: true, read: true, consume: true }),
            `$KV.${s.leaseBucket}.>`,
            ...streamApi(objStream(s.modelBucket), { create: true, read: true }),
            ...streamApi(s.eventStream, { create: true, pull: true }),
            // Control replies too large for one message are staged in the blob bucket.
            ...blobs,
          ],
        },
        subscribe: { allow: [`${s.controlAll} head`, s.heartbeatAll, s.eventAll, s.headPresenceAll, inbox] },
        allowResponses: true,
      };
  }
}

/** An nkey user's public key (`U…`), or a config variable (`$NAME`) that nats-server resolves from its environment. */
const NKEY_USER_RE = /^U[A-Z2-7]{55}$/;
const CONFIG_VAR_RE = /^\$[A-Za-z_][A-Za-z0-9_]*$/;

export interface AuthUser {
  role: Role;
  /** The user's public nkey (`U…`, 56 characters) or `$VAR` for one taken from the server's environment. */
  nkeyPublic: string;
}

/** Name of the config variable holding a role's permissions in `natsAuthConfig`'s text. */
export function permissionsVariable(role: Role): string {
  return `FLOTILLA_${role.toUpperCase()}_PERMISSIONS`;
}

const quote = (s: string) => JSON.stringify(s);
const list = (xs: readonly string[], indent: string) => `[\n${xs.map((x) => `${indent}  ${quote(x)}`).join('\n')}\n${indent}]`;

function permissionsBlock(perm: RolePermissions): string {
  const part = (name: string, l: PermissionList) =>
    `  ${name}: {\n    allow: ${list(l.allow, '    ')}${l.deny?.length ? `\n    deny: ${list(l.deny, '    ')}` : ''}\n  }`;
  const lines = [part('publish', perm.publish), part('subscribe', perm.subscribe)];
  if (perm.allowResponses) lines.push('  allow_responses: true');
  return `{\n${lines.join('\n')}\n}`;
}

/**
 * nats-server configuration text: one permissions variable per role that has users, then an
 * `authorization` block with one nkey user per entry. Subjects are quoted (`$JS…` unquoted would
 * be a variable reference); public keys are not, so `$VAR` resolves from the environment.
 */
export function natsAuthConfig(users: ReadonlyArray<AuthUser>, cluster: string = DEFAULT_CLUSTER): string {
  if (users.length === 0) throw new BadRequestError('an authorization block needs at least one user');
  const seen = new Set<string>();
  for (const u of users) {
    if (!isRole(u.role)) throw new BadRequestError(`unknown role ${JSON.stringify(u.role)}: use one of ${ROLES.join(', ')}`);
    if (!NKEY_USER_RE.test(u.nkeyPublic) && !CONFIG_VAR_RE.test(u.nkeyPublic)) {
      throw new BadRequestError(
        `not an nkey user public key (U…, 56 characters) nor a $VARIABLE: ${JSON.stringify(u.nkeyPublic.slice(0, 80))}`,
      );
    }
    if (seen.has(u.nkeyPublic)) throw new BadRequestError(`nkey ${u.nkeyPublic} is listed twice`);
    seen.add(u.nkeyPublic);
  }
  const roles = ROLES.filter((r) => users.some((u) => u.role === r));
  const out = [
    `# Flotilla roles for cluster '${subjects(cluster).cluster}' (generated from @flotilla/protocol permissions.ts; see docs/security.md).`,
  ];
  for (const r of roles) out.push(`${permissionsVariable(r)} = ${permissionsBlock(rolePermissions(r, cluster))}`);
  out.push('authorization {', '  users = [');
  for (const u of users) out.push(`    { nkey: ${u.nkeyPublic}, permissions: $${permissionsVariable(u.role)} }  # ${u.role}`);
  out.push('  ]', '}');
  return `${out.join('\n')}\n`;
}

// ---------- seed files ----------

const SEED_RE = /^SU[A-Z2-7]{56}$/;
const ROLE_LINE_RE = /^#\s*flotilla-role:\s*([A-Za-z]+)\s*$/;

/** The text of a role's seed file: a comment naming the role (read back by `seedFileRole`), then the seed. */
export function seedFileText(role: Role, seed: string): string {
  return `# flotilla-role: ${role}\n# An nkey user seed: keep it secret. Connect with --nkey <this file> (inbox prefix ${inboxPrefixFor(role)}).\n${seed}\n`;
}

/** The nkey seed in a seed file's text: the line `SU…` (comments and blank lines are ignored). */
export function seedFromFileText(text: string): string {
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  const seed = lines.find((l) => SEED_RE.test(l));
  if (seed) return seed;
  // Not a user seed we recognise: hand the content to the NATS client as it is (it reports the problem).
  return lines.filter((l) => l && !l.startsWith('#')).join('');
}

/**
 * The role a seed file was made for: its `# flotilla-role: <role>` line, else its file name
 * (`caller.nk` → caller, `worker.nk`…), else undefined (the default inbox prefix then applies).
 */
export function seedFileRole(text: string, fileName?: string): Role | undefined {
  for (const line of text.split(/\r?\n/)) {
    const m = ROLE_LINE_RE.exec(line.trim());
    if (m && isRole(m[1]!.toLowerCase())) return m[1]!.toLowerCase() as Role;
  }
  const base = fileName
    ?.split(/[\\/]/)
    .pop()
    ?.replace(/\.(nk|seed|nkey)$/i, '')
    .toLowerCase();
  return isRole(base) ? base : undefined;
}

/** The cluster a config written by `natsAuthConfig` is for (its first line), or undefined. */
export function authConfigCluster(text: string): string | undefined {
  return /^# Flotilla roles for cluster '([A-Za-z0-9_-]+)'/m.exec(text)?.[1];
}
