// Profiles kept in JetStream KV, keyed by (model digest, device class, onnxruntime version, and
// the input shape for a model with dynamic non-batch dims), so a replica on a device of the same
// class reuses a profile instead of measuring again.
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { PROTOCOL_VERSION, decode, encode, parseModelProfile, profileKey, shapeKey, type ModelProfile } from '@flotilla/protocol';

/** A stored profile parsed by its schema; undefined when absent or not a valid profile (it is then measured again). */
function profileOf(e: { operation: string; value: Uint8Array } | null): ModelProfile | undefined {
  if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
  try {
    return parseModelProfile(decode(e.value));
  } catch {
    return undefined;
  }
}

export class ProfileStore {
  private kv?: Promise<KV>;
  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly replicas = 1,
  ) {}

  private open(): Promise<KV> {
    this.kv ??= new Kvm(jetstream(this.nc)).create(this.bucket, { history: 1, replicas: this.replicas }).catch((e: unknown) => {
      this.kv = undefined;
      throw e;
    });
    return this.kv;
  }

  /** The profile of a model on a device class; of one input shape (`shapeKey`) when `shape` is given. */
  async get(digest: string, deviceClass: string, ortVersion: string, shape?: string): Promise<ModelProfile | undefined> {
    const p = profileOf(await (await this.open()).get(profileKey(digest, deviceClass, ortVersion, shape)));
    // A profile stored under another model's (or shape's) key is not this one's.
    return p && p.digest === digest && (p.shape ? shapeKey(p.shape) : undefined) === shape ? p : undefined;
  }

  async put(p: ModelProfile): Promise<void> {
    const key = profileKey(p.digest, p.deviceClass, p.ortVersion, p.shape ? shapeKey(p.shape) : undefined);
    await (await this.open()).put(key, encode({ ...p, v: PROTOCOL_VERSION }));
  }

  /** Every stored per-shape profile of a model on a device class (at most `limit`). */
  async shapes(digest: string, deviceClass: string, ortVersion: string, limit: number): Promise<ModelProfile[]> {
    const kv = await this.open();
    const out: ModelProfile[] = [];
    for await (const key of await kv.keys(`${profileKey(digest, deviceClass, ortVersion)}.>`)) {
      if (out.length >= limit) break;
      const p = profileOf(await kv.get(key));
      if (p && p.digest === digest && p.shape && key === profileKey(digest, deviceClass, ortVersion, shapeKey(p.shape))) out.push(p);
    }
    return out;
  }

  /** Every stored profile of a model digest (all device classes). */
  async forDigest(digest: string): Promise<ModelProfile[]> {
    const kv = await this.open();
    const out: ModelProfile[] = [];
    for await (const key of await kv.keys(`${digest}.>`)) {
      const p = profileOf(await kv.get(key));
      if (p && p.digest === digest) out.push(p);
    }
    return out;
  }
}
