// Profiles kept in JetStream KV, keyed by (model digest, device class, onnxruntime version), so a
// replica on a device of the same class reuses a profile instead of measuring again.
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { PROTOCOL_VERSION, decode, encode, profileKey, type ModelProfile } from '@flotilla/protocol';

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

  async get(digest: string, deviceClass: string, ortVersion: string): Promise<ModelProfile | undefined> {
    const e = await (await this.open()).get(profileKey(digest, deviceClass, ortVersion));
    if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
    return decode<ModelProfile>(e.value);
  }

  async put(p: ModelProfile): Promise<void> {
    await (await this.open()).put(profileKey(p.digest, p.deviceClass, p.ortVersion), encode({ ...p, v: PROTOCOL_VERSION }));
  }

  /** Every stored profile of a model digest (all device classes). */
  async forDigest(digest: string): Promise<ModelProfile[]> {
    const kv = await this.open();
    const out: ModelProfile[] = [];
    for await (const key of await kv.keys(`${digest}.>`)) {
      const e = await kv.get(key);
      if (e && e.operation === 'PUT' && e.value.length) out.push(decode<ModelProfile>(e.value));
    }
    return out;
  }
}
