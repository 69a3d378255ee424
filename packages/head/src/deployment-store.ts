// Desired state in JetStream KV (`deployments.<name>` → spec and creation time), so it survives a
// head restart or failover. Writes retry through a JetStream leader election (a few seconds on a
// clustered NATS) and then fail with a retryable UNAVAILABLE; reads skip records that do not parse.
import type { KV } from '@nats-io/kv';
import {
  BadRequestError,
  PROTOCOL_VERSION,
  UnavailableError,
  decode,
  encode,
  parseDeploySpec,
  parseDeploymentRecord,
  toFlotillaError,
} from '@flotilla/protocol';
import type { DeploySpec } from '@flotilla/protocol';
import { STORE_WRITE_RETRY_POLICY, retry } from '@flotilla/bus';

/** How long a write keeps retrying, ms. */
export const STORE_WRITE_DEADLINE_MS = 8000;

export class DeploymentStore {
  constructor(
    private readonly kv: KV,
    /** The bucket's name, for error messages. */
    private readonly bucket: string,
  ) {}

  put(spec: DeploySpec, createdAt: number): Promise<void> {
    return this.write(`deployments.${spec.name}`, encode({ v: PROTOCOL_VERSION, spec, createdAt }));
  }

  delete(name: string): Promise<void> {
    return this.write(`deployments.${name}`);
  }

  /** Every readable record; `skipped(key, why)` hears of the others. */
  async load(skipped: (key: string, why: string) => void): Promise<Array<{ spec: DeploySpec; createdAt: number }>> {
    const out: Array<{ spec: DeploySpec; createdAt: number }> = [];
    for await (const key of await this.kv.keys('deployments.>')) {
      const e = await this.kv.get(key);
      if (!e || e.operation !== 'PUT') continue;
      try {
        const { spec: raw, createdAt } = parseDeploymentRecord(decode(e.value));
        const spec = parseDeploySpec(raw);
        if (key !== `deployments.${spec.name}`) throw new BadRequestError(`record of '${spec.name}' stored under another key`);
        out.push({ spec, createdAt });
      } catch (err) {
        skipped(key, toFlotillaError(err).message);
      }
    }
    return out;
  }

  /** Retries through a JetStream leader election (a few seconds on a clustered NATS), then UNAVAILABLE. */
  private write(key: string, value?: Uint8Array): Promise<void> {
    return retry(
      async () => {
        if (value) await this.kv.put(key, value);
        else await this.kv.delete(key);
      },
      {
        policy: STORE_WRITE_RETRY_POLICY,
        deadline: Date.now() + STORE_WRITE_DEADLINE_MS,
        isRetryable: () => true,
        onExhausted: (err) => new UnavailableError(`cannot write ${key} to ${this.bucket}: ${(err as Error)?.message}`, { cause: err }),
      },
    );
  }
}
