"""Quickstart: call a Flotilla model from Python with the client package (clients/python).

    pip install -e clients/python       # flotilla_client: nats-py, msgpack, numpy
    python3 examples/python_client.py NATS_URL CLUSTER MODEL   (model input 'x' float32 [1, 16])

Prints the outputs as JSON. A model whose replicas were evicted (or scaled to zero) has no
subscriber: NATS answers "no responders", and the client asks the head to bring the model back
(`ctl.ensure` with `waitMs`: the head replies once a replica is ready) and sends the request again.
Errors are typed by code (flotilla_client.UnknownModelError, InputMismatchError, ...).
The wire protocol it speaks, for a client in any language: docs/protocol.md.
"""
import json
import sys

import numpy as np

from flotilla_client import FlotillaError, SyncClient


def main(url: str, cluster: str, model: str) -> None:
    x = (np.arange(16, dtype=np.float32) / 16).reshape(1, 16)
    with SyncClient(url, cluster) as client:
        try:
            outputs = client.infer(model, {"x": x}, timeout=10)
        except FlotillaError as err:  # err.code, err.message, err.data, err.retryable
            sys.exit(f"{err.code}: {err.message}")
    print(json.dumps({name: {"dtype": str(y.dtype), "dims": list(y.shape), "data": y.ravel().tolist()} for name, y in outputs.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
