"""Call a Flotilla model from Python with nothing but nats-py and msgpack (see docs/protocol.md).

usage: python3 examples/python_client.py NATS_URL CLUSTER MODEL  (model input 'x' float32 [1, 16])

A model whose replicas were evicted (or scaled to zero) has no subscriber: NATS answers "no
responders". The caller then asks the head to bring the model back (`ctl.ensure` with `waitMs`:
the head replies once a replica is ready) and sends the request again.
"""
import asyncio, json, struct, sys, time

import msgpack
import nats
from nats.errors import NoRespondersError


async def infer(nc, cluster: str, model: str, inputs: dict, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    request = msgpack.packb({"v": 1, "inputs": inputs, "timeoutMs": int(timeout_s * 1000)})
    backoff = 0.05
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{model} did not answer within {timeout_s} s")
        try:
            msg = await nc.request(f"flotilla.{cluster}.infer.{model}", request, timeout=left)
            return msgpack.unpackb(msg.data)
        except NoRespondersError:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000) - 500)
            ensure = {"v": 1, "name": model, "waitMs": min(wait_ms, 30000)}
            reply = msgpack.unpackb((await nc.request(f"flotilla.{cluster}.ctl.ensure", msgpack.packb(ensure), timeout=wait_ms / 1000 + 0.5)).data)
            if not reply["ok"]:
                return reply  # UNKNOWN_MODEL & co
            status = reply["result"]
            reason = status.get("pendingReason") or {}
            if status["ready"] == 0 and reason.get("code") == "MODEL_LOAD_FAILED":
                return {"v": 1, "ok": False, "error": reason}
            if status["ready"] == 0:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)


async def main(url: str, cluster: str, model: str) -> None:
    nc = await nats.connect(url)
    x = [i / 16 for i in range(16)]
    tensor = {"dtype": "float32", "dims": [1, 16], "data": struct.pack("<16f", *x)}
    reply = await infer(nc, cluster, model, {"x": tensor})
    await nc.close()
    if not reply["ok"]:
        sys.exit(f'{reply["error"]["code"]}: {reply["error"]["message"]}')
    outputs = {}
    for name, t in reply["outputs"].items():
        n = len(t["data"]) // 4
        outputs[name] = {"dtype": t["dtype"], "dims": t["dims"], "data": list(struct.unpack(f"<{n}f", t["data"]))}
    print(json.dumps(outputs))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
