// `flotilla auth init`: one nkey user per role (caller, operator, worker, head) and the
// nats-server configuration that gives each exactly its permissions (@flotilla/protocol
// permissions.ts). `flotilla up --auth DIR` runs a local cluster with it; see docs/security.md.
import { chmodSync, existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { createUser } from '@nats-io/nkeys';
import { BadRequestError, DEFAULT_CLUSTER, ROLES, assertValidName, natsAuthConfig, seedFileText, type Role } from '@flotilla/protocol';
import { reportError } from './format.js';

export const AUTH_CONFIG_FILE = 'nats.conf';

export interface AuthInitOptions {
  /** Directory to write into (created, mode 0700, when missing). */
  out: string;
  /** Cluster whose subjects the permissions name. Default `FLOTILLA_CLUSTER` or `default`. */
  cluster?: string;
  /** Replace existing seeds (default false: refuse, a running cluster may use them). */
  force?: boolean;
}

export interface AuthInitResult {
  dir: string;
  cluster: string;
  config: string;
  users: Array<{ role: Role; seedFile: string; publicKey: string }>;
}

/** `DIR/<role>.nk`: where `auth init` puts a role's seed. */
export function seedFile(dir: string, role: Role): string {
  return join(dir, `${role}.nk`);
}

/** Writes `<role>.nk` (seed, 0600) and `<role>.pub` (public key) per role, and `nats.conf`. */
export function authInit(opts: AuthInitOptions): AuthInitResult {
  const cluster = opts.cluster ?? process.env.FLOTILLA_CLUSTER ?? DEFAULT_CLUSTER;
  assertValidName('cluster', cluster);
  const dir = resolve(opts.out);
  const existing = ROLES.map((r) => seedFile(dir, r)).filter((f) => existsSync(f));
  if (existing.length && !opts.force) {
    throw new BadRequestError(
      `${existing.join(', ')} already exist${existing.length === 1 ? 's' : ''}: a cluster may be using them (--force replaces them)`,
    );
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const users = ROLES.map((role) => {
    const kp = createUser();
    const user = { role, seedFile: seedFile(dir, role), publicKey: kp.getPublicKey() };
    writePrivate(user.seedFile, seedFileText(role, new TextDecoder().decode(kp.getSeed())));
    writeAtomic(join(dir, `${role}.pub`), `${user.publicKey}\n`, 0o644);
    kp.clear();
    return user;
  });
  const config = natsAuthConfig(
    users.map((u) => ({ role: u.role, nkeyPublic: u.publicKey })),
    cluster,
  );
  writeAtomic(join(dir, AUTH_CONFIG_FILE), config, 0o644);
  return { dir, cluster, config, users };
}

function writeAtomic(file: string, text: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode); // the umask may have narrowed it; rename keeps it
  renameSync(tmp, file);
}

/** A seed is never readable by others, not even for a moment: created 0600 before it is written. */
function writePrivate(file: string, text: string): void {
  writeAtomic(file, text, 0o600);
}

export function authCommand(program: Command): void {
  const auth = program.command('auth').description('NATS credentials and permissions for the four roles (docs/security.md)');
  auth
    .command('init')
    .description('write one nkey seed per role (caller.nk, operator.nk, worker.nk, head.nk) and nats.conf with their permissions')
    .requiredOption('--out <dir>', 'directory to write into')
    .option('--cluster <name>', 'cluster the permissions are for (env FLOTILLA_CLUSTER, default default)')
    .option('--force', 'replace existing seeds')
    .action((o: { out: string; cluster?: string; force?: boolean }) => {
      try {
        const r = authInit(o);
        const lines = [
          `wrote ${r.users.length} nkey users for cluster '${r.cluster}' to ${r.dir}:`,
          ...r.users.map((u) => `  ${u.role.padEnd(8)} ${u.seedFile}  ${u.publicKey}`),
          `  nats.conf ${join(r.dir, AUTH_CONFIG_FILE)} (include it in your nats-server config, or: flotilla up --auth ${r.dir})`,
          `connect with --nkey ${seedFile(r.dir, 'caller')} (infer, read) or --nkey ${seedFile(r.dir, 'operator')} (deploy, scale, jobs)`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        process.exitCode = reportError(err, false);
      }
    });
}
