// One way for every Flotilla process to connect to NATS: servers plus the auth and TLS options
// an operator may require (token, user/password, creds file, nkey seed file, TLS files).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import {
  credsAuthenticator,
  errors as natsErrors,
  nkeyAuthenticator,
  type NatsConnection,
  type Payload,
  type PublishOptions,
  type Subscription,
  type SubscriptionOptions,
} from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { inboxPrefixFor, seedFileRole, seedFromFileText } from '@flotilla/protocol';
import { mapNatsError } from './rpc.js';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

export interface BusOptions {
  /** NATS URL(s); a string may list several, comma-separated. Default `FLOTILLA_NATS` or nats://127.0.0.1:4222. */
  servers?: string | string[];
  /**
   * Try the servers in the order given (e.g. the NATS node on this host first) instead of
   * shuffling them. Default false, or true when `FLOTILLA_NATS_NO_RANDOMIZE` is `1`/`true`.
   */
  noRandomize?: boolean;
  /** Connection name shown by the server (monitoring). */
  name?: string;
  token?: string;
  user?: string;
  pass?: string;
  /** Path to a `.creds` file (JWT + nkey seed). */
  credsFile?: string;
  /**
   * Path to a file holding an nkey seed. A file written by `flotilla auth init` names its role (a
   * `# flotilla-role:` line, or the file name `caller.nk` …): the role's inbox prefix follows.
   */
  nkeySeedFile?: string;
  /**
   * Prefix of this connection's reply subjects (and JetStream deliveries). Default: the role's
   * (`_INBOX_<role>`) when the nkey seed file names one, else NATS' `_INBOX`. With role
   * permissions a connection may only subscribe under its role's prefix.
   */
  inboxPrefix?: string;
  /** TLS: CA bundle, client certificate and key (PEM file paths). */
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Keep trying to reconnect forever (default true): processes must survive a broker restart. */
  reconnectForever?: boolean;
  /**
   * Capture the caller's stack for every request (nats.js' async traces), so a timeout names the
   * call site. Off by default: creating two Error objects per request cost the load generator a
   * third of its CPU at ~20,000 requests/s (`pnpm bench`, mlp). On with
   * `FLOTILLA_NATS_ASYNC_TRACES=1` when debugging.
   */
  asyncTraces?: boolean;
  /** Fail the first connect after this many ms. Default 5 000. */
  timeoutMs?: number;
}

/** Server URLs from a list or a comma-separated string, blanks dropped. */
export function serverList(servers: string | readonly string[]): string[] {
  return (typeof servers === 'string' ? servers.split(',') : servers).map((s) => s.trim()).filter(Boolean);
}

export async function connectBus(opts: BusOptions = {}): Promise<NatsConnection> {
  const servers = serverList(opts.servers ?? process.env.FLOTILLA_NATS ?? DEFAULT_NATS_URL);
  const noRandomize = opts.noRandomize ?? /^(1|true)$/i.test(process.env.FLOTILLA_NATS_NO_RANDOMIZE ?? '');
  const seedText = !opts.credsFile && opts.nkeySeedFile ? readFileSync(opts.nkeySeedFile, 'utf8') : undefined;
  const authenticator = opts.credsFile
    ? credsAuthenticator(readFileSync(opts.credsFile))
    : seedText !== undefined
      ? nkeyAuthenticator(new TextEncoder().encode(seedFromFileText(seedText)))
      : undefined;
  const role = seedText !== undefined ? seedFileRole(seedText, basename(opts.nkeySeedFile!)) : undefined;
  const inboxPrefix = opts.inboxPrefix || (role ? inboxPrefixFor(role) : undefined);
  const tls =
    opts.tlsCaFile || opts.tlsCertFile || opts.tlsKeyFile
      ? { caFile: opts.tlsCaFile, certFile: opts.tlsCertFile, keyFile: opts.tlsKeyFile }
      : undefined;
  return connect({
    servers,
    noRandomize,
    name: opts.name,
    token: opts.token,
    user: opts.user,
    pass: opts.pass,
    authenticator,
    ...(inboxPrefix ? { inboxPrefix } : {}),
    tls,
    noAsyncTraces: !(opts.asyncTraces ?? /^(1|true)$/i.test(process.env.FLOTILLA_NATS_ASYNC_TRACES ?? '')),
    timeout: opts.timeoutMs ?? 5000,
    maxReconnectAttempts: opts.reconnectForever === false ? 10 : -1,
    reconnectTimeWait: 500,
    pingInterval: 10_000,
  });
}

/**
 * Drains a connection, falling back to a hard close when draining fails or takes too long (a
 * connection that is reconnecting cannot drain and would otherwise keep retrying forever).
 */
export async function closeBus(nc: NatsConnection, timeoutMs = 5000): Promise<void> {
  if (nc.isClosed()) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((_, reject) => (timer = setTimeout(() => reject(new Error('drain timeout')), timeoutMs)));
  try {
    await Promise.race([nc.drain(), timeout]);
  } catch {
    await nc.close().catch(() => undefined);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Subscribes and waits until the server has the subscription (a flush round trip: the server
 * answers a refused SUB before the PONG). Throws FORBIDDEN when the connection's permissions do
 * not allow it, instead of leaving a subscription that silently receives nothing.
 */
export async function subscribeConfirmed(nc: NatsConnection, subject: string, opts?: SubscriptionOptions): Promise<Subscription> {
  const sub = nc.subscribe(subject, opts);
  await nc.flush();
  if (sub.isClosed()) {
    const err = await sub.closed;
    throw mapNatsError(err ?? new Error(`subscription to ${subject} was closed`), subject, 0);
  }
  return sub;
}

/**
 * Publishes and waits for the server's verdict (a flush round trip): throws FORBIDDEN when the
 * connection's permissions refuse the subject. A plain publish is otherwise fire-and-forget: the
 * server's refusal only shows as an asynchronous status event.
 */
export async function publishConfirmed(nc: NatsConnection, subject: string, data?: Payload, opts?: PublishOptions): Promise<void> {
  const status = nc.status();
  const refused: Error[] = [];
  const watching = (async () => {
    for await (const s of status) {
      const err = s.type === 'error' ? (s as { error?: unknown }).error : undefined;
      if (err instanceof natsErrors.PermissionViolationError && err.operation === 'publish' && err.subject === subject) refused.push(err);
    }
  })();
  try {
    nc.publish(subject, data, opts);
    await nc.flush();
  } finally {
    // The iterator is a QueuedIterator: stop() ends it after what is already queued (typed as AsyncIterable only).
    (status as unknown as { stop(): void }).stop();
    await watching;
  }
  if (refused.length) throw mapNatsError(refused[0], subject, 0);
}
