"""The client against a cluster whose nats-server enforces the roles of docs/security.md.

packages/devkit/src/python-auth.test.ts writes the seeds and nats.conf (`flotilla auth init`), starts
nats-server with them (head and worker on their own seeds, max_payload 128 KiB), deploys `mlp`, computes
its expected outputs with onnxruntime-node and runs this file with FLOTILLA_TEST_AUTH_NATS,
FLOTILLA_TEST_AUTH_CLUSTER, FLOTILLA_TEST_CALLER_SEED, FLOTILLA_TEST_REFUSED_SEED (a role that may not
infer: the worker's) and FLOTILLA_TEST_EXPECTED. Without them every test here is skipped.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, Dict

import numpy as np
import pytest

from flotilla_client import Client, ForbiddenError, SyncClient

NATS = os.environ.get("FLOTILLA_TEST_AUTH_NATS", "")
CLUSTER = os.environ.get("FLOTILLA_TEST_AUTH_CLUSTER", "default")
CALLER_SEED = os.environ.get("FLOTILLA_TEST_CALLER_SEED", "")
REFUSED_SEED = os.environ.get("FLOTILLA_TEST_REFUSED_SEED", "")
EXPECTED = os.environ.get("FLOTILLA_TEST_EXPECTED", "")

pytestmark = pytest.mark.skipif(
    not (NATS and CALLER_SEED and REFUSED_SEED and EXPECTED),
    reason="FLOTILLA_TEST_AUTH_NATS / _CALLER_SEED / _REFUSED_SEED / FLOTILLA_TEST_EXPECTED are not set: "
    "these need a cluster with nats-server permissions (run packages/devkit/src/python-auth.test.ts)",
)

#: A refusal must come from the server's -ERR, far sooner than the call's timeout.
TIMEOUT_S = 20.0
QUICK_S = 2.0


@pytest.fixture(scope="module")
def mlp() -> Dict[str, np.ndarray]:
    with open(EXPECTED) as f:
        e = json.load(f)["mlp"]
    return {"x": np.array(e["x"], dtype=np.float32), "y": np.array(e["y"], dtype=np.float32)}


def test_a_caller_infers_with_its_seed_file_alone(mlp: Dict[str, np.ndarray]) -> None:
    # No inbox_prefix: the seed file's `# flotilla-role: caller` line gives _INBOX_caller.
    async def go() -> None:
        async with Client(NATS, CLUSTER, nkey_seed_file=CALLER_SEED) as c:
            out = await c.infer_with_meta("mlp", {"x": mlp["x"]}, timeout=TIMEOUT_S, request_id="auth-1")
            assert out["attempts"] == 1 and out["id"] == "auth-1"
            y = out["outputs"]["y"]
            assert y.dtype == np.float32 and y.shape == mlp["y"].shape
            np.testing.assert_allclose(y, mlp["y"], rtol=1e-6, atol=1e-7)
            assert (await c.describe("mlp"))["ready"] >= 1  # a read control op: allowed to callers
            # Over max_payload (128 KiB): both ways direct, with the replica that answered above (a
            # caller may publish to a replica's own subject and its body channel).
            assert c._replicas["mlp"] == out["meta"]["replica"]
            rows = 9000
            big = np.tile(mlp["x"], (rows // len(mlp["x"]), 1))
            y_big = await c.infer("mlp", {"x": big}, timeout=TIMEOUT_S)
            np.testing.assert_allclose(y_big["y"], np.tile(mlp["y"], (rows // len(mlp["x"]), 1)), rtol=1e-5, atol=1e-6)

    asyncio.run(go())
    with SyncClient(NATS, CLUSTER, nkey_seed_file=CALLER_SEED) as c:
        np.testing.assert_allclose(c.infer("mlp", {"x": mlp["x"]}, timeout=TIMEOUT_S)["y"], mlp["y"], rtol=1e-6, atol=1e-7)
    assert [t for t in asyncio.all_tasks(c._loop) if not t.done()] == []  # closed without leaving tasks pending


def test_a_role_that_may_not_infer_gets_forbidden_at_once(mlp: Dict[str, np.ndarray]) -> None:
    async def go() -> None:
        async with Client(NATS, CLUSTER, nkey_seed_file=REFUSED_SEED) as c:
            await c.connect()  # the worker's credentials are valid: connecting is allowed
            t0 = time.monotonic()
            with pytest.raises(ForbiddenError) as info:
                await c.infer("mlp", {"x": mlp["x"]}, timeout=TIMEOUT_S)
            took = time.monotonic() - t0
            assert took < QUICK_S, f"FORBIDDEN after {took:.2f} s (timeout {TIMEOUT_S} s)"
            e = info.value
            assert e.code == "FORBIDDEN" and not e.retryable
            assert e.data == {"subject": f"flotilla.{CLUSTER}.infer.mlp", "operation": "publish"}
            assert "publish on flotilla." in e.message
            # Control requests too (the worker may not ask the head anything).
            t0 = time.monotonic()
            with pytest.raises(ForbiddenError):
                await c.describe("mlp", timeout=TIMEOUT_S)
            assert time.monotonic() - t0 < QUICK_S

    asyncio.run(go())


def test_a_caller_with_another_inbox_prefix_gets_forbidden_not_a_timeout(mlp: Dict[str, np.ndarray]) -> None:
    async def go() -> None:
        async with Client(NATS, CLUSTER, nkey_seed_file=CALLER_SEED, inbox_prefix="_INBOX") as c:
            t0 = time.monotonic()
            with pytest.raises(ForbiddenError, match="inbox_prefix"):
                await c.infer("mlp", {"x": mlp["x"]}, timeout=TIMEOUT_S)
            assert time.monotonic() - t0 < QUICK_S

    asyncio.run(go())


def test_no_credentials_fail_to_connect_forbidden_with_a_clear_message(mlp: Dict[str, np.ndarray]) -> None:
    async def go() -> None:
        c = Client(NATS, CLUSTER)
        t0 = time.monotonic()
        with pytest.raises(ForbiddenError) as info:
            await c.infer("mlp", {"x": mlp["x"]}, timeout=TIMEOUT_S)
        assert time.monotonic() - t0 < QUICK_S
        e = info.value
        assert e.code == "FORBIDDEN" and not e.retryable
        assert "refused this connection (no credentials): Authorization Violation" in e.message
        assert e.data == {"operation": "connect", "credentials": "no credentials"}
        await c.close()

    asyncio.run(go())
    # the synchronous client says the same
    with SyncClient(NATS, CLUSTER) as s:
        with pytest.raises(ForbiddenError, match="no credentials"):
            s.connect()
    assert [t for t in asyncio.all_tasks(s._loop) if not t.done()] == []  # nothing left pending by the failed connect
