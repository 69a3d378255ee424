"""Call a Flotilla model from Python with nothing but nats-py and msgpack (see docs/protocol.md).

usage: python3 examples/python_client.py NATS_URL CLUSTER MODEL  (model input 'x' float32 [1, 16])
"""
import asyncio, json, struct, sys

import msgpack
import nats


async def main(url: str, cluster: str, model: str) -> None:
    nc = await nats.connect(url)
    x = [i / 16 for i in range(16)]
    tensor = {"dtype": "float32", "dims": [1, 16], "data": struct.pack("<16f", *x)}
    request = {"v": 1, "inputs": {"x": tensor}, "timeoutMs": 10000}
    msg = await nc.request(f"flotilla.{cluster}.infer.{model}", msgpack.packb(request), timeout=10)
    reply = msgpack.unpackb(msg.data)
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
