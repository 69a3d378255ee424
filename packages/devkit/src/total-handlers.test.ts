// Integration (real nats-server): bus `serve` and `listen` are total. A handler that throws, a body
// that does not decode, a reply over max_payload: the connection keeps reading, every request
// gets a coded reply, and an oversized reply is staged or refused as PAYLOAD_TOO_LARGE.
import { connect } from '@nats-io/transport-node';
import { BlobStore, closeBus, listen, serve, silentLogger, type NatsConnection } from '@flotilla/bus';
import { BadRequestError, ErrorCode, PROTOCOL_VERSION, decode, encode } from '@flotilla/protocol';
import { NatsServer } from '@flotilla/local';

describe('total handlers (bus serve/listen)', () => {
  let nats: NatsServer;
  let server: NatsConnection;
  let caller: NatsConnection;
  const logger = silentLogger();

  beforeAll(async () => {
    nats = await NatsServer.start({ maxPayload: 64 * 1024 });
    server = await connect({ servers: nats.url });
    caller = await connect({ servers: nats.url });
  });
  afterAll(async () => {
    await closeBus(caller);
    await closeBus(server);
    await nats.stop();
  });

  const ask = async (subject: string, body: Uint8Array) =>
    decode<{ ok: boolean; result?: unknown; error?: { code: string; message: string }; blob?: { name: string; size: number } }>(
      (await caller.request(subject, body, { timeout: 2000 })).data,
    );

  it('a throwing handler, junk bytes and a bad version leave the connection reading and get coded replies', async () => {
    let calls = 0;
    serve(server, 't.throw', { logger, what: 'test', parse: (raw) => raw }, (req) => {
      calls++;
      if (req.boom === 'sync') throw new Error('sync boom');
      if (req.boom === 'async') return Promise.reject(new Error('async boom'));
      return { echo: req.n };
    });
    let heard = 0;
    listen(server, 't.oneway', { logger, what: 'test', parse: (raw) => raw }, (m) => {
      if (m.boom) throw new Error('listener boom');
      heard++;
    });
    await server.flush();
    expect((await ask('t.throw', encode({ v: PROTOCOL_VERSION, boom: 'sync' }))).error?.code).toBe(ErrorCode.INTERNAL);
    expect((await ask('t.throw', encode({ v: PROTOCOL_VERSION, boom: 'async' }))).error?.code).toBe(ErrorCode.INTERNAL);
    expect((await ask('t.throw', new Uint8Array([0xc1]))).error?.code).toBe(ErrorCode.DECODE_ERROR);
    expect((await ask('t.throw', encode({ v: 2 }))).error?.code).toBe(ErrorCode.VERSION_MISMATCH);
    for (let i = 0; i < 50; i++) caller.publish('t.oneway', i % 2 ? new Uint8Array([0xc1]) : encode({ v: PROTOCOL_VERSION, boom: true }));
    caller.publish('t.oneway', encode({ v: PROTOCOL_VERSION }));
    // Still reading: the next good request and message are handled.
    expect((await ask('t.throw', encode({ v: PROTOCOL_VERSION, n: 7 }))).result).toEqual({ echo: 7 });
    await caller.flush();
    await server.flush();
    expect(heard).toBe(1);
    expect(calls).toBe(3);
  });

  it("a validation failure is answered with the parser's code", async () => {
    let handled = 0;
    const parse = () => {
      throw new BadRequestError('invalid test message: $.field: required');
    };
    serve(server, 't.parse', { logger, what: 'test', parse }, () => handled++);
    await server.flush();
    const reply = await ask('t.parse', encode({ v: PROTOCOL_VERSION }));
    expect(reply.error).toEqual({ code: ErrorCode.BAD_REQUEST, message: 'invalid test message: $.field: required' });
    expect(handled).toBe(0);
  });

  it('a reply over max_payload becomes PAYLOAD_TOO_LARGE, or is staged when a stager is given', async () => {
    serve(server, 't.big', { logger, what: 'test', parse: (raw) => raw }, () => ({ big: 'x'.repeat(200 * 1024) }));
    const blobs = new BlobStore(server, `total_${Date.now()}`);
    serve(server, 't.staged', { logger, what: 'test', parse: (raw) => raw, stage: (d) => blobs.put(d) }, () => ({
      big: 'y'.repeat(200 * 1024),
    }));
    await server.flush();
    const refused = await ask('t.big', encode({ v: PROTOCOL_VERSION }));
    expect(refused.error?.code).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
    const staged = await ask('t.staged', encode({ v: PROTOCOL_VERSION }));
    expect(staged.blob?.size).toBeGreaterThan(200 * 1024);
    const body = decode<{ result: { big: string } }>(await new BlobStore(caller, blobs['bucket' as never]).take(staged.blob!, 1 << 20));
    expect(body.result.big).toHaveLength(200 * 1024);
    // And the connection still answers.
    expect((await ask('t.throw', encode({ v: PROTOCOL_VERSION, n: 1 }))).result).toEqual({ echo: 1 });
  });
});
