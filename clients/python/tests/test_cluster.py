"""The client against a real cluster (started by packages/devkit/src/python-client.test.ts).

Models deployed there: `mlp` (x [N,16] -> y [N,4]), `affine` (y = 2x + 1, any [N,C,H,W]),
`tight` (affine, queue of 1: OVERLOADED under load), `broken` (not ONNX: its load fails),
`gone` (deployed then undeployed) and `victim` (mlp, evicted before the tests run). The tests
that bring `victim` back come last: its reload evicts other models.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, List

import numpy as np
import pytest
from nats.js.errors import NotFoundError

from conftest import CLUSTER, NATS, needs_cluster
from flotilla_client import (
    BadRequestError,
    Client,
    ConnectionLostError,
    DeadlineExceededError,
    FlotillaError,
    InputMismatchError,
    ModelLoadFailedError,
    OverloadedError,
    SyncClient,
    UnavailableError,
    UnknownModelError,
)

from flotilla_client.wire import direct_chunk_bytes, pack

MiB = 1024 * 1024


async def live_blobs(c: Client) -> List[str]:
    store = await c._blobs()
    try:
        return [o.name for o in await store.list(ignore_deletes=True)]
    except NotFoundError:  # nats-py: an empty store
        return []


async def stored_msgs(c: Client) -> int:
    """Messages the blob bucket's stream has ever stored (chunks and metas)."""
    await c._blobs()
    js = (await c._connection()).jetstream()
    return (await js.stream_info(f"OBJ_flotilla_{CLUSTER}_blobs")).state.last_seq


async def settled_msgs(c: Client) -> int:
    """stored_msgs once it has not moved for 300 ms: a replica deletes a staged body it took after
    answering, so the delete of the last round trip may land a moment later."""
    last = await stored_msgs(c)
    while True:
        await asyncio.sleep(0.3)
        now = await stored_msgs(c)
        if now == last:
            return now
        last = now


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def subscribed(nc: Any) -> None:
    """Waits until the server has this connection's subscriptions. One ``flush()`` is not enough
    in nats-py 2.16: it writes its PING straight to the socket but a SUB into the pending buffer it
    flushes after (``_send_ping`` vs ``_send_command``), so the PONG can come before the server
    has the SUB, and a request from another connection then gets *no responders*. The second
    flush's PING follows the SUB the first one wrote."""
    await nc.flush()
    await nc.flush()


def test_unreachable_nats_is_unavailable() -> None:
    async def go() -> None:
        c = Client("nats://127.0.0.1:1", "default", connect_timeout=0.5)
        with pytest.raises(UnavailableError) as e:
            await c.infer("mlp", {"x": np.zeros((1, 16), np.float32)})
        assert e.value.retryable and "cannot connect" in e.value.message

    run(go())


@needs_cluster
def test_mlp_outputs_equal_onnxruntime(expected: Dict[str, Any]) -> None:
    x = np.array(expected["mlp"]["x"], dtype=np.float32)
    want = np.array(expected["mlp"]["y"], dtype=np.float32)

    async def go() -> None:
        async with Client(NATS, CLUSTER) as c:
            out = await c.infer_with_meta("mlp", {"x": x}, request_id="py-1")
            assert set(out["outputs"]) == {"y"} and out["id"] == "py-1" and out["attempts"] == 1
            y = out["outputs"]["y"]
            assert y.dtype == np.float32 and y.shape == want.shape
            np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
            assert out["meta"]["worker"] == "w0" and out["meta"]["replica"]
            # one row at a time, concurrently: the replica batches them; same numbers
            rows = await asyncio.gather(*(c.infer("mlp", {"x": x[i : i + 1]}) for i in range(len(x))))
            np.testing.assert_allclose(np.concatenate([r["y"] for r in rows]), want, rtol=1e-6, atol=1e-7)
            # a subset of outputs
            assert set(await c.infer("mlp", {"x": x}, outputs=["y"])) == {"y"}

    run(go())


@needs_cluster
def test_the_blobs_header_goes_only_while_a_reply_may_not_fit() -> None:
    """Headers cost the replica CPU on every request: ``Flotilla-Blobs`` goes until the head has
    described the model (asked in the background on first use), then only when the model's reply
    may not fit one message (affine: every dim open)."""
    async def go() -> None:
        async with Client(NATS, CLUSTER) as c, Client(NATS, CLUSTER) as peer:
            spy = await peer._connection()
            seen: Dict[str, List[Any]] = {"mlp": [], "affine": []}

            async def record(msg: Any) -> None:
                seen[msg.subject.rsplit(".", 1)[-1]].append(msg.headers)

            for m in seen:
                await spy.subscribe(f"flotilla.{CLUSTER}.infer.{m}", cb=record)
            await subscribed(spy)

            async def described(model: str) -> None:
                for _ in range(250):
                    known = c._signatures.get(model)
                    if known is not None and known[0] is not None:
                        return
                    await asyncio.sleep(0.02)
                raise AssertionError(f"{model} was not described")

            x = np.zeros((2, 16), np.float32)
            a = np.zeros((1, 1, 1, 4), np.float32)
            await c.infer("mlp", {"x": x})
            await c.infer("affine", {"x": a})
            await described("mlp")
            await described("affine")
            assert (await c.infer("mlp", {"x": x}))["y"].shape == (2, 4)
            await c.infer("affine", {"x": a})
            await spy.flush()
            assert seen["mlp"] == [{"Flotilla-Blobs": "direct"}, None]
            assert seen["affine"] == [{"Flotilla-Blobs": "direct"}] * 2

    run(go())


@needs_cluster
def test_describe_and_list() -> None:
    async def go() -> None:
        async with Client([NATS], CLUSTER) as c:
            d = await c.describe("mlp")
            assert d["spec"]["name"] == "mlp" and d["ready"] >= 1 and d["replicas"][0]["state"] == "ready"
            names = {s["spec"]["name"] for s in await c.list()}
            assert {"mlp", "affine", "tight"} <= names and "gone" not in names
            with pytest.raises(UnknownModelError):
                await c.describe("gone")
            with pytest.raises(BadRequestError):
                await c.describe("not a name")

    run(go())


@needs_cluster
def test_typed_errors_from_the_replica() -> None:
    async def go() -> None:
        async with Client(NATS, CLUSTER) as c:
            with pytest.raises(InputMismatchError) as e:
                await c.infer("mlp", {"x": np.zeros((1, 15), np.float32)})
            assert e.value.code == "INPUT_MISMATCH" and not e.value.retryable and "expected" in e.value.data
            with pytest.raises(InputMismatchError):
                await c.infer("mlp", {"x": np.zeros((1, 16), np.float64)})
            with pytest.raises(BadRequestError) as b:
                await c.infer("mlp", {"x": np.zeros((1, 16), np.float32)}, outputs=["nope"])
            assert "nope" in b.value.message
            with pytest.raises(BadRequestError):  # refused before sending
                await c.infer("mlp", {"x": np.zeros((1, 16), np.complex64)})

    run(go())


@needs_cluster
def test_large_bodies_go_direct_both_ways_or_staged(figures: Dict[str, Any]) -> None:
    """12 MiB in, 12 MiB out (max_payload is 1 MiB); y = 2x + 1: both ways straight between the
    client and the replica (direct: nothing stored) or, with ``direct_bodies=False``, through
    flotilla_<cluster>_blobs."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 1024, 1024), dtype=np.float32)

    async def go() -> None:
        async with Client(NATS, CLUSTER, direct_bodies=False) as staged, Client(NATS, CLUSTER) as direct:
            for c in (staged, direct):
                await c.connect()
                assert c.max_payload == MiB
                await c.infer("affine", {"x": x[:, :, :8]})  # warm: bucket opened, replica ready (and known)
            stored: Dict[str, int] = {}
            for label, c in (("staged", staged), ("direct", direct)):
                times: List[float] = []
                before = await settled_msgs(c)
                for _ in range(3):
                    t0 = time.perf_counter()
                    y = (await c.infer("affine", {"x": x}, timeout=60))["y"]
                    times.append(time.perf_counter() - t0)
                    np.testing.assert_array_equal(y, 2 * x + 1)
                stored[label] = await settled_msgs(c) - before
                figures[f"{label}_12MiB_round_trip_ms"] = [round(t * 1000, 1) for t in times]
            # Direct both ways: nothing went through the bucket (staged: 12 MiB each way, in chunks).
            assert stored["direct"] == 0 and stored["staged"] > 0, stored
            # A replica this client believes in that is gone: nobody answers its own subject, so the
            # request is staged through the queue group at once, and the replica that answered is learnt.
            direct._replicas["affine"] = "affine-gone"
            before = await stored_msgs(direct)
            np.testing.assert_array_equal((await direct.infer_with_meta("affine", {"x": x}, timeout=60, retries=0))["outputs"]["y"], 2 * x + 1)
            assert await stored_msgs(direct) > before
            assert direct._replicas["affine"] not in ("affine-gone", None)
            c = staged
            # the share of it that is this client's object-store traffic: one put and one take of 12 MiB
            t0 = time.perf_counter()
            ref = await c._stage(x.tobytes() + b"\x80")
            t1 = time.perf_counter()
            with pytest.raises(FlotillaError):  # taken and removed, then refused: not a msgpack map
                await c._take(ref)
            figures["blob_put_12MiB_ms"] = round((t1 - t0) * 1000, 1)
            figures["blob_take_12MiB_ms"] = round((time.perf_counter() - t1) * 1000, 1)
            # just under the threshold (not staged) and just over it
            for rows in (84, 85):  # 84 rows: 1,032,192 B of data; 85: 1,044,480 B
                xs = x[:, :, :rows]
                np.testing.assert_array_equal((await c.infer("affine", {"x": xs}))["y"], 2 * xs + 1)
            # staged bodies are removed once taken, both ways: the bucket is left empty
            await asyncio.sleep(0.2)
            assert await live_blobs(c) == []
            figures["not_staged_1MiB_round_trip_ms"] = round(await timed(c, x[:, :, :84]), 1)

    async def timed(c: Client, xs: np.ndarray) -> float:
        t0 = time.perf_counter()
        await c.infer("affine", {"x": xs})
        return (time.perf_counter() - t0) * 1000

    run(go())


@needs_cluster
def test_a_lost_connection_fails_the_request_in_flight_at_once() -> None:
    """A request whose connection breaks may have lost its message or its reply with the socket:
    with retries=0 it fails UNAVAILABLE (ConnectionLostError) at once, not at its 10 s attempt
    timeout; the next request is answered on the new connection."""
    async def go() -> None:
        async with Client(NATS, CLUSTER) as c, Client(NATS, CLUSTER) as peer:
            nc, other = await c._connection(), await peer._connection()
            # A "replica" of a model nobody else serves: it takes the request and never answers.
            subject = f"flotilla.{CLUSTER}.infer.silent"
            seen: List[str] = []

            async def silent(msg: Any) -> None:
                seen.append(msg.reply or "")

            sub = await other.subscribe(subject, cb=silent)
            await subscribed(other)
            # Seen from this client's side too before the request goes out (a probe without a reply).
            for _ in range(100):
                await nc.publish(subject, b"probe")
                await nc.flush()
                await asyncio.sleep(0.02)
                if seen:
                    break
            assert seen, "the silent replica's subscription never became visible"

            async def cut() -> None:
                # Once the request has reached the "replica": its reply can only come over this connection.
                for _ in range(500):
                    if any(seen):
                        break
                    await asyncio.sleep(0.01)
                nc._transport.close()  # what a broken TCP connection does: nats-py reconnects

            t0 = time.monotonic()
            cutter = asyncio.ensure_future(cut())
            with pytest.raises(ConnectionLostError) as e:
                await c.infer("silent", {"x": np.zeros((1, 16), np.float32)}, timeout=30, retries=0)
            await cutter
            assert e.value.code == "UNAVAILABLE" and e.value.retryable
            assert time.monotonic() - t0 < 5.0  # its attempt timeout is 10 s
            await sub.unsubscribe()
            y = await c.infer("mlp", {"x": np.zeros((1, 16), np.float32)}, timeout=20)
            assert y["y"].shape == (1, 4)

    run(go())


@needs_cluster
def test_a_direct_reply_get_lost_on_the_replicas_side_is_asked_again() -> None:
    """A ``get`` is idempotent: one that went down with the replica's connection (ours stayed up,
    so nothing tells us) is sent again after the retry interval, not after the 10 s stall."""
    async def go() -> None:
        async with Client(NATS, CLUSTER) as c, Client(NATS, CLUSTER) as peer:
            other = await peer._connection()
            await c._connection()
            chunk = direct_chunk_bytes(c.max_payload)
            pad = bytes(range(256)) * (chunk * 5 // 2 // 256)  # 3 chunks
            body = pack({"v": 1, "ok": True, "pad": pad})
            subject = c._body_channel("m", "fake")
            dropped: List[str] = []

            async def replica(msg: Any) -> None:
                op = (msg.headers or {}).get("Flotilla-Body", "").split(" ")
                offset, length = int(op[2]), int(op[3])
                if offset > 0 and offset + length < len(body) and not dropped:
                    dropped.append(msg.reply)  # lost with the replica's socket
                    return
                await msg.respond(body[offset:offset + length])

            sub = await other.subscribe(subject, cb=replica)
            await subscribed(other)
            c.direct_get_retry = 0.3
            t0 = time.monotonic()
            raw = await c._pull("m", {"name": "r1", "size": len(body), "direct": "fake"})
            took = time.monotonic() - t0
            await sub.unsubscribe()
            assert len(dropped) == 1
            assert raw["pad"] == pad
            assert 0.28 <= took < 3.0, took  # the chunk stall is 10 s

    run(go())


@needs_cluster
def test_a_control_call_in_flight_on_a_lost_connection_is_sent_again() -> None:
    """Control operations are idempotent: one whose connection breaks is sent again on the new
    connection within its timeout (the "head" of a cluster of its own here answers only the
    second request)."""
    async def go() -> None:
        async with Client(NATS, "probes") as c, Client(NATS, CLUSTER) as peer:
            nc, other = await c._connection(), await peer._connection()
            seen: List[int] = []

            async def second_only(msg: Any) -> None:
                seen.append(1)
                if len(seen) >= 2:
                    await msg.respond(pack({"v": 1, "ok": True, "result": {"answered": len(seen)}}))

            sub = await other.subscribe("flotilla.probes.ctl.probe", cb=second_only)
            await subscribed(other)

            async def cut() -> None:
                await asyncio.sleep(0.3)
                nc._transport.close()

            cutter = asyncio.ensure_future(cut())
            t0 = time.monotonic()
            assert await c._control("probe", {}, 10.0) == {"answered": 2}
            await cutter
            assert time.monotonic() - t0 < 5.0
            await sub.unsubscribe()

    run(go())


@needs_cluster
def test_overloaded_is_retried_with_backoff_inside_the_deadline() -> None:
    x = np.ones((1, 3, 128, 128), np.float32)

    async def go() -> None:
        async with Client(NATS, CLUSTER) as c:
            retried: List[str] = []
            outs = await asyncio.gather(
                *(c.infer("tight", {"x": x}, timeout=20, on_retry=lambda e, n, d: retried.append(e.code)) for _ in range(24))
            )
            for o in outs:
                np.testing.assert_array_equal(o["y"], 3 * x)
            assert "OVERLOADED" in retried, "no request was refused: the test did not overload the replica"
            # without retries the refusal reaches the caller, typed
            results = await asyncio.gather(*(c.infer("tight", {"x": x}, retries=0) for _ in range(24)), return_exceptions=True)
            refused = [r for r in results if isinstance(r, FlotillaError)]
            assert refused and all(isinstance(r, OverloadedError) and r.retryable for r in refused)

    run(go())


@needs_cluster
def test_deadline_is_relative_and_bounds_the_call() -> None:
    x = np.zeros((1, 3, 1024, 1024), np.float32)

    async def go() -> None:
        async with Client(NATS, CLUSTER) as c:
            t0 = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                await c.infer("affine", {"x": x}, timeout=0.02, attempt_timeout=0.02)
            assert time.monotonic() - t0 < 2.0

    run(go())


@needs_cluster
def test_sync_client_from_several_threads(expected: Dict[str, Any]) -> None:
    x = np.array(expected["mlp"]["x"], dtype=np.float32)
    want = np.array(expected["mlp"]["y"], dtype=np.float32)
    with SyncClient(NATS, CLUSTER) as c:
        assert c.describe("mlp")["ready"] >= 1
        results: List[np.ndarray] = [np.empty(0)] * 8
        def call(i: int) -> None:
            results[i] = c.infer("mlp", {"x": x})["y"]
        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for y in results:
            np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
        with pytest.raises(UnknownModelError):
            c.infer("nosuch", {"x": x})
    with pytest.raises(UnavailableError):
        c.infer("mlp", {"x": x})  # closed
    # nats-py's reader, flusher and ping tasks finished before the loop stopped (none destroyed pending)
    assert [t for t in asyncio.all_tasks(c._loop) if not t.done()] == []


@needs_cluster
def test_unknown_undeployed_and_broken_models_stop_at_ensure() -> None:
    x = np.zeros((1, 16), np.float32)

    async def go() -> None:
        async with Client(NATS, CLUSTER) as c:
            for model in ("nosuch", "gone"):
                t0 = time.monotonic()
                with pytest.raises(UnknownModelError):
                    await c.infer(model, {"x": x}, timeout=10)
                assert time.monotonic() - t0 < 2.0  # no waiting for the deadline
            with pytest.raises(ModelLoadFailedError):
                await c.infer("broken", {"x": x}, timeout=20)

    run(go())


@needs_cluster
def test_an_evicted_model_is_brought_back_through_ensure(expected: Dict[str, Any], figures: Dict[str, Any]) -> None:
    x = np.array(expected["mlp"]["x"], dtype=np.float32)
    want = np.array(expected["mlp"]["y"], dtype=np.float32)

    async def go() -> None:
        async with Client(NATS, CLUSTER) as c:
            assert (await c.describe("victim"))["ready"] == 0  # evicted by the Jest side
            t0 = time.perf_counter()
            out = await c.infer_with_meta("victim", {"x": x}, timeout=30)
            figures["evicted_model_reload_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            np.testing.assert_allclose(out["outputs"]["y"], want, rtol=1e-6, atol=1e-7)
            assert (await c.describe("victim"))["ready"] == 1

    run(go())
