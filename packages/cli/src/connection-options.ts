// Options every networked command shares: where NATS is, which cluster, and NATS auth/TLS.
import type { Command } from 'commander';
import { DEFAULT_CLUSTER } from '@flotilla/protocol';
import { DEFAULT_NATS_URL, type BusOptions } from '@flotilla/bus';

export interface ConnectionFlags {
  nats?: string;
  cluster?: string;
  token?: string;
  user?: string;
  password?: string;
  creds?: string;
  nkey?: string;
  inboxPrefix?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

export function withConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--nats <url>', `NATS server URL(s), comma separated (env FLOTILLA_NATS, default ${DEFAULT_NATS_URL})`)
    .option('--cluster <name>', `cluster name (env FLOTILLA_CLUSTER, default ${DEFAULT_CLUSTER})`)
    .option('--token <token>', 'NATS token (env FLOTILLA_NATS_TOKEN)')
    .option('--user <user>', 'NATS user (env FLOTILLA_NATS_USER)')
    .option('--password <password>', 'NATS password (env FLOTILLA_NATS_PASSWORD)')
    .option('--creds <file>', 'NATS .creds file (env FLOTILLA_NATS_CREDS)')
    .option(
      '--nkey <file>',
      'file holding an NATS nkey seed, e.g. from `flotilla auth init` (env FLOTILLA_NATS_NKEY); its role sets the inbox prefix',
    )
    .option(
      '--inbox-prefix <prefix>',
      "prefix of reply subjects (env FLOTILLA_NATS_INBOX_PREFIX; default _INBOX_<role> for a role's seed file, else _INBOX)",
    )
    .option('--tls-ca <file>', 'CA bundle for TLS')
    .option('--tls-cert <file>', 'client certificate for TLS')
    .option('--tls-key <file>', 'client key for TLS');
}

export function busOptions(f: ConnectionFlags): BusOptions & { cluster: string } {
  const env = process.env;
  const url = f.nats ?? env.FLOTILLA_NATS ?? DEFAULT_NATS_URL;
  return {
    servers: url
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    cluster: f.cluster ?? env.FLOTILLA_CLUSTER ?? DEFAULT_CLUSTER,
    token: f.token ?? env.FLOTILLA_NATS_TOKEN,
    user: f.user ?? env.FLOTILLA_NATS_USER,
    pass: f.password ?? env.FLOTILLA_NATS_PASSWORD,
    credsFile: f.creds ?? env.FLOTILLA_NATS_CREDS,
    nkeySeedFile: f.nkey ?? env.FLOTILLA_NATS_NKEY,
    inboxPrefix: f.inboxPrefix ?? env.FLOTILLA_NATS_INBOX_PREFIX,
    tlsCaFile: f.tlsCa,
    tlsCertFile: f.tlsCert,
    tlsKeyFile: f.tlsKey,
  };
}
