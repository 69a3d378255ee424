// Events (loaded, evicted, refused, scaled, ...) are plain NATS messages; this JetStream stream
// keeps the last EVENT_HISTORY of them, so a head that starts leading (after a restart or a
// failover) has the history `flotilla events` shows, and knows which models were evicted.
import type { NatsConnection } from '@nats-io/nats-core';
import { DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { decode, type EventMessage } from '@flotilla/protocol';

/** Creates the stream if it is missing (idempotent; another head creating it meanwhile is fine). */
export async function ensureEventStream(nc: NatsConnection, name: string, subject: string, maxMsgs: number, replicas: number): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(name);
  } catch {
    await jsm.streams
      .add({ name, subjects: [subject], storage: StorageType.File, retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old, max_msgs: maxMsgs, num_replicas: replicas })
      .catch(async (e: unknown) => {
        await jsm.streams.info(name).catch(() => Promise.reject(e));
      });
  }
}

/** Every event the stream holds, oldest first (unreadable messages skipped). */
export async function readEventHistory(nc: NatsConnection, name: string): Promise<EventMessage[]> {
  const consumer = await jetstream(nc).consumers.get(name);
  const out: EventMessage[] = [];
  if ((await consumer.info(true)).num_pending === 0) return out;
  const messages = await consumer.consume({ max_messages: 256 });
  try {
    for await (const m of messages) {
      try {
        out.push(decode<EventMessage>(m.data));
      } catch {
        // not an event: skip
      }
      if (m.info.pending === 0) break;
    }
  } finally {
    await messages.close().catch(() => undefined);
  }
  return out;
}
