// Model artifacts on local disk, keyed by content digest: fetched once from the cluster's object
// store (streamed, sha256-verified, renamed into place atomically), reused by every later load.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { STORE_WRITE_RETRY_POLICY, isNoResponders, isTimeout, objectStores, retry } from '@flotilla/bus';
import { ModelLoadFailedError } from '@flotilla/protocol';

const DIGEST_RE = /^[0-9a-f]{64}$/;

/**
 * How long one attempt to open the model store waits for JetStream, ms. While a stream's nodes
 * elect a new leader (a NATS node lost) or the connection is being re-made, its API answers
 * nothing: with nats.js's 5 s default a placement's first load failed with "timeout" and the head
 * placed it again (failures.test.ts's three-node test, 2026-12-01: the next attempt, 0.5 s later,
 * opened the store in 4 ms).
 */
export const STORE_OPEN_ATTEMPT_MS = 1000;
/** How long opening the model store is retried through an election or a reconnect, ms. */
export const STORE_OPEN_DEADLINE_MS = 10_000;

export class ArtifactCache {
  private readonly inflight = new Map<string, Promise<string>>();
  readonly dir: string;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    dir: string,
    /** How long opening the model store is retried (STORE_OPEN_DEADLINE_MS; tests shorten it). */
    private readonly openDeadlineMs = STORE_OPEN_DEADLINE_MS,
  ) {
    this.dir = resolve(dir);
    mkdirSync(this.dir, { recursive: true });
  }

  /** Local path of the artifact, downloading it if needed. Concurrent calls share one download. */
  path(digest: string): Promise<string> {
    if (!DIGEST_RE.test(digest)) return Promise.reject(new ModelLoadFailedError(`invalid artifact digest ${JSON.stringify(digest)}`));
    const file = join(this.dir, `${digest}.onnx`);
    if (existsSync(file)) return Promise.resolve(file);
    let p = this.inflight.get(digest);
    if (!p) {
      p = this.download(digest, file).finally(() => this.inflight.delete(digest));
      this.inflight.set(digest, p);
    }
    return p;
  }

  /**
   * The model store. First opened in short attempts retried through a JetStream leader election or
   * a reconnect (no answer, or no responders) until `openDeadlineMs`, any other failure at once;
   * then the handle the download uses is opened again with nats.js's own timeout (a few ms once the
   * stream answers), so that reading a large artifact on a busy server is not held to the short one.
   */
  private async openStore() {
    await retry(
      async ({ remainingMs }) =>
        (await objectStores(jetstream(this.nc, { timeout: Math.max(1, Math.min(STORE_OPEN_ATTEMPT_MS, remainingMs)) }))).open(this.bucket),
      {
        policy: STORE_WRITE_RETRY_POLICY,
        deadline: Date.now() + this.openDeadlineMs,
        isRetryable: (err) => (isTimeout(err) ? 'immediately' : isNoResponders(err)),
      },
    );
    return (await objectStores(jetstream(this.nc))).open(this.bucket);
  }

  private async download(digest: string, file: string): Promise<string> {
    const os = await this.openStore();
    const obj = await os.get(digest);
    if (!obj) throw new ModelLoadFailedError(`artifact ${digest} is not in the model store ${this.bucket}`);
    const tmp = `${file}.${process.pid}.${Date.now()}.part`;
    const out = createWriteStream(tmp);
    const hash = createHash('sha256');
    try {
      const reader = obj.data.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        hash.update(value);
        if (!out.write(value)) await once(out, 'drain');
      }
      out.end();
      await once(out, 'finish');
      await obj.error;
      const got = hash.digest('hex');
      if (got !== digest) throw new ModelLoadFailedError(`artifact ${digest} is corrupt in the store (sha256 ${got})`);
      renameSync(tmp, file);
      return file;
    } catch (err) {
      out.destroy();
      rmSync(tmp, { force: true });
      throw err instanceof ModelLoadFailedError
        ? err
        : new ModelLoadFailedError(`fetching artifact ${digest}: ${(err as Error).message}`, { cause: err });
    }
  }
}
