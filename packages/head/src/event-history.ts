// Events (loaded, evicted, refused, scaled, ...) are plain NATS messages; this JetStream stream
// keeps the last `perType` of each event type (subjects are `flotilla.<c>.events.<type>`, so
// `max_msgs_per_subject` is per type: one noisy type cannot erase the others), so a head that
// starts leading (after a restart or a failover) has the history `flotilla events` shows, and
// knows which models were evicted. Messages above `max_msg_size` are not stored at all.
import type { NatsConnection } from '@nats-io/nats-core';
import { DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { decode, parseEventMessage, type EventMessage } from '@flotilla/protocol';
import type { EventLogLimits } from './event-log.js';

/** Largest event message the stream stores, bytes (the event schema bounds reason and data well below). */
export const MAX_EVENT_MESSAGE_BYTES = 16 * 1024;

/** The stream's limits for an event log's limits. */
export function eventStreamLimits(
  limits: EventLogLimits,
): Pick<StreamConfig, 'max_msgs_per_subject' | 'max_msgs' | 'max_bytes' | 'max_msg_size'> {
  return {
    max_msgs_per_subject: limits.perType,
    max_msgs: limits.perType * limits.maxTypes,
    max_bytes: limits.maxBytes * 4,
    max_msg_size: MAX_EVENT_MESSAGE_BYTES,
  };
}

/**
 * Creates the stream if it is missing (idempotent; another head creating it meanwhile is fine),
 * and brings an existing one's limits up to date (a stream made before per-type history).
 */
export async function ensureEventStream(
  nc: NatsConnection,
  name: string,
  subject: string,
  limits: EventLogLimits,
  replicas: number,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const want = eventStreamLimits(limits);
  let info;
  try {
    info = await jsm.streams.info(name);
  } catch {
    await jsm.streams
      .add({
        name,
        subjects: [subject],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        num_replicas: replicas,
        ...want,
      })
      .catch(async (e: unknown) => {
        await jsm.streams.info(name).catch(() => Promise.reject(e));
      });
    return;
  }
  const c = info.config;
  if ((Object.keys(want) as Array<keyof typeof want>).some((k) => c[k] !== want[k])) {
    await jsm.streams.update(name, { ...c, ...want });
  }
}

/** Every event the stream holds with its encoded size, oldest first (messages that are not valid events are skipped). */
export async function readEventHistory(nc: NatsConnection, name: string): Promise<Array<{ e: EventMessage; size: number }>> {
  const consumer = await jetstream(nc).consumers.get(name);
  const out: Array<{ e: EventMessage; size: number }> = [];
  if ((await consumer.info(true)).num_pending === 0) return out;
  const messages = await consumer.consume({ max_messages: 256 });
  try {
    for await (const m of messages) {
      try {
        const e = parseEventMessage(decode(m.data));
        if (m.subject.endsWith(`.${e.type}`)) out.push({ e, size: m.data.byteLength });
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
