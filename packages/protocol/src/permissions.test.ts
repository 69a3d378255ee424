// The role permissions as data: which subjects each role may publish and subscribe to, checked with
// NATS' own matching rules (tokens, `*`, `>`, queue-qualified subscribe entries) over a table.
import {
  READ_CONTROL_OPS,
  ROLES,
  WRITE_CONTROL_OPS,
  inboxPrefixFor,
  natsAuthConfig,
  permissionsVariable,
  rolePermissions,
  seedFileRole,
  seedFileText,
  seedFromFileText,
  type Role,
} from './permissions.js';
import { CONTROL_OPS } from './subjects.js';

/** NATS subject matching: `*` one token, `>` one or more trailing tokens. */
function match(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

function mayPublish(role: Role, subject: string, cluster = 'c'): boolean {
  const { publish } = rolePermissions(role, cluster);
  return publish.allow.some((a) => match(a, subject)) && !(publish.deny ?? []).some((d) => match(d, subject));
}

/** A subscribe entry `subject queue` allows only that queue group; a plain one allows any. */
function maySubscribe(role: Role, subject: string, queue?: string, cluster = 'c'): boolean {
  return rolePermissions(role, cluster).subscribe.allow.some((a) => {
    const [pattern, q] = a.split(' ');
    return match(pattern!, subject) && (q === undefined || q === queue);
  });
}

const SEED = 'SUAMXKGJ344O64UCCEOFIKWPX3PST4QYJQL4L3KRGXF7EUJ2K75GZHFFUE';
const PUB = 'UB3NU2QFKCNE3BGBYK52NSDHTJBN7XDXRUWXMIGMDMWU455TZD37IE7Y';

describe('role permissions', () => {
  const cases: Array<[string, string, Record<Role, boolean>]> = [
    ['infer', 'flotilla.c.infer.mlp', { caller: true, operator: true, worker: false, head: false }],
    ['infer on a replica', 'flotilla.c.infer.mlp.r1', { caller: true, operator: true, worker: false, head: false }],
    ['list', 'flotilla.c.ctl.list', { caller: true, operator: true, worker: false, head: false }],
    ['ensure', 'flotilla.c.ctl.ensure', { caller: true, operator: true, worker: false, head: false }],
    ['deploy', 'flotilla.c.ctl.deploy', { caller: false, operator: true, worker: false, head: false }],
    ['undeploy', 'flotilla.c.ctl.undeploy', { caller: false, operator: true, worker: false, head: false }],
    ['scale', 'flotilla.c.ctl.scale', { caller: false, operator: true, worker: false, head: false }],
    ['heartbeat', 'flotilla.c.hb.w0', { caller: false, operator: false, worker: true, head: false }],
    ['head presence', 'flotilla.c.heads.h1', { caller: false, operator: false, worker: false, head: true }],
    ['event', 'flotilla.c.events.loaded', { caller: false, operator: false, worker: true, head: false }],
    ['scaled event', 'flotilla.c.events.scaled', { caller: false, operator: false, worker: true, head: true }],
    ['load command', 'flotilla.c.worker.w0.load', { caller: false, operator: false, worker: false, head: true }],
    ['write the lease', '$KV.flotilla_c_lease.leader', { caller: false, operator: false, worker: false, head: true }],
    ['write the state', '$KV.flotilla_c_state.deployments.mlp', { caller: false, operator: false, worker: false, head: true }],
    ['purge the state', '$JS.API.STREAM.PURGE.KV_flotilla_c_state', { caller: false, operator: false, worker: false, head: false }],
    [
      'delete the lease bucket',
      '$JS.API.STREAM.DELETE.KV_flotilla_c_lease',
      { caller: false, operator: false, worker: false, head: false },
    ],
    [
      'read the state',
      '$JS.API.DIRECT.GET.KV_flotilla_c_state.$KV.flotilla_c_state.deployments.mlp',
      { caller: false, operator: false, worker: false, head: true },
    ],
    ['write a profile', '$KV.flotilla_c_profiles.abc.cpu.1', { caller: false, operator: false, worker: true, head: false }],
    [
      'read a profile',
      '$JS.API.DIRECT.GET.KV_flotilla_c_profiles.$KV.flotilla_c_profiles.abc.cpu.1',
      { caller: true, operator: true, worker: true, head: false },
    ],
    ['upload a model', '$O.flotilla_c_models.C.abc', { caller: false, operator: true, worker: false, head: false }],
    ['stage a blob', '$O.flotilla_c_blobs.C.abc', { caller: true, operator: true, worker: true, head: true }],
    ['write a job record', '$KV.flotilla_c_jobs.j1', { caller: false, operator: true, worker: false, head: false }],
    ['record a job result', 'flotilla.c.jobs.j1.results', { caller: false, operator: true, worker: false, head: false }],
    ['store a large job result', '$O.flotilla_c_jobobjects.C.abc', { caller: false, operator: true, worker: false, head: false }],
    ['another cluster', 'flotilla.other.infer.mlp', { caller: false, operator: false, worker: false, head: false }],
    ['reply to anyone', '_INBOX.abc.def', { caller: false, operator: false, worker: false, head: false }],
    ['anything', 'foo', { caller: false, operator: false, worker: false, head: false }],
  ];
  it.each(cases)('publish: %s (%s)', (_what, subject, expected) => {
    for (const role of ROLES) expect([role, mayPublish(role, subject)]).toEqual([role, expected[role]]);
  });

  const subs: Array<[string, string, string | undefined, Record<Role, boolean>]> = [
    ['the replica queue group', 'flotilla.c.infer.mlp', 'replicas', { caller: false, operator: false, worker: true, head: false }],
    ['a replica endpoint', 'flotilla.c.infer.mlp.r1', 'q', { caller: false, operator: false, worker: true, head: false }],
    ['every request, no queue', 'flotilla.c.infer.>', undefined, { caller: false, operator: false, worker: false, head: false }],
    ['one model, no queue', 'flotilla.c.infer.mlp', undefined, { caller: false, operator: false, worker: false, head: false }],
    ['control plane as head', 'flotilla.c.ctl.*', 'head', { caller: false, operator: false, worker: false, head: true }],
    ['control plane, no queue', 'flotilla.c.ctl.*', undefined, { caller: false, operator: false, worker: false, head: false }],
    ['heartbeats', 'flotilla.c.hb.*', undefined, { caller: false, operator: false, worker: false, head: true }],
    ['head presence', 'flotilla.c.heads.*', undefined, { caller: false, operator: false, worker: false, head: true }],
    ['load commands', 'flotilla.c.worker.w0.load', undefined, { caller: false, operator: false, worker: true, head: false }],
    ['micro service discovery', '$SRV.PING', undefined, { caller: false, operator: false, worker: true, head: false }],
    ['all replies', '_INBOX.>', undefined, { caller: false, operator: false, worker: false, head: false }],
    ['callers’ replies', '_INBOX_caller.>', undefined, { caller: true, operator: false, worker: false, head: false }],
    ['heads’ replies', '_INBOX_head.abc.*', undefined, { caller: false, operator: false, worker: false, head: true }],
  ];
  it.each(subs)('subscribe: %s (%s %s)', (_what, subject, queue, expected) => {
    for (const role of ROLES) expect([role, maySubscribe(role, subject, queue)]).toEqual([role, expected[role]]);
  });

  it('splits the control operations into read (callers) and write (operators), covering all', () => {
    expect([...READ_CONTROL_OPS, ...WRITE_CONTROL_OPS].sort()).toEqual([...CONTROL_OPS].sort());
    expect([...WRITE_CONTROL_OPS].sort()).toEqual(['deploy', 'scale', 'undeploy']);
  });

  it('an operator may do everything a caller may', () => {
    const op = rolePermissions('operator', 'c');
    for (const a of rolePermissions('caller', 'c').publish.allow) expect(op.publish.allow).toContain(a);
  });

  it('only workers and heads answer requests they received', () => {
    expect(ROLES.filter((r) => rolePermissions(r).allowResponses)).toEqual(['worker', 'head']);
  });

  it('gives every role its own inbox prefix', () => {
    expect(new Set(ROLES.map(inboxPrefixFor)).size).toBe(ROLES.length);
    expect(inboxPrefixFor('caller')).toBe('_INBOX_caller');
  });

  it('refuses an unknown role and an invalid cluster', () => {
    expect(() => rolePermissions('admin' as Role)).toThrow(/unknown role/);
    expect(() => rolePermissions('caller', 'a.b')).toThrow(/cluster/);
  });
});

describe('natsAuthConfig', () => {
  it('writes one permissions variable per role used and one nkey user per entry', () => {
    const text = natsAuthConfig(
      [
        { role: 'caller', nkeyPublic: PUB },
        { role: 'head', nkeyPublic: '$HEAD_NKEY' },
      ],
      'c',
    );
    expect(text).toContain(`${permissionsVariable('caller')} = {`);
    expect(text).toContain(`${permissionsVariable('head')} = {`);
    expect(text).not.toContain(permissionsVariable('worker'));
    expect(text).toContain(`{ nkey: ${PUB}, permissions: $${permissionsVariable('caller')} }`);
    expect(text).toContain(`{ nkey: $HEAD_NKEY, permissions: $${permissionsVariable('head')} }`);
    // `$JS…` unquoted would be read as a variable.
    expect(text).toContain('"$JS.API.INFO"');
    expect(text).not.toMatch(/[^"]\$JS\./);
    expect(text).toContain('"flotilla.c.ctl.* head"');
    expect(text).toContain('allow_responses: true');
  });

  it('refuses bad keys, duplicates and empty lists', () => {
    expect(() => natsAuthConfig([], 'c')).toThrow(/at least one/);
    expect(() => natsAuthConfig([{ role: 'caller', nkeyPublic: 'U123' }], 'c')).toThrow(/nkey/);
    expect(() => natsAuthConfig([{ role: 'caller', nkeyPublic: 'x", permissions: {}' }], 'c')).toThrow(/nkey/);
    expect(() =>
      natsAuthConfig(
        [
          { role: 'caller', nkeyPublic: PUB },
          { role: 'head', nkeyPublic: PUB },
        ],
        'c',
      ),
    ).toThrow(/twice/);
  });
});

describe('seed files', () => {
  it('name their role in a comment and give the seed back', () => {
    const text = seedFileText('operator', SEED);
    expect(seedFileRole(text)).toBe('operator');
    expect(seedFileRole(text, 'caller.nk')).toBe('operator'); // the comment wins over the name
    expect(seedFromFileText(text)).toBe(SEED);
  });

  it('fall back to the file name, else no role', () => {
    expect(seedFileRole(`${SEED}\n`, '/etc/flotilla/worker.nk')).toBe('worker');
    expect(seedFileRole(`${SEED}\n`, 'head')).toBe('head');
    expect(seedFileRole(`${SEED}\n`, 'mine.nk')).toBeUndefined();
    expect(seedFileRole('# flotilla-role: admin\n', 'x.nk')).toBeUndefined();
    expect(seedFromFileText(`\n  ${SEED}  \n`)).toBe(SEED);
  });
});
