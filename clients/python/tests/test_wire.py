"""The wire format without a cluster: plain msgpack, exactly the keys the protocol allows, tensors."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest

from flotilla_client import (
    ERRORS_BY_CODE,
    BadRequestError,
    FlotillaError,
    ForbiddenError,
    OverloadedError,
    UnknownModelError,
    backoff_delay,
    from_wire,
)
from flotilla_client.wire import (
    DTYPES,
    REPLY_META_BYTES,
    InferRequest,
    from_wire_tensor,
    must_stage,
    parse_blob_ref,
    reply_bytes_at_most,
    to_wire,
)

# The error-code table of docs/protocol.md.
CODES = [
    "UNKNOWN_MODEL", "BAD_REQUEST", "DECODE_ERROR", "VERSION_MISMATCH", "INPUT_MISMATCH", "PAYLOAD_TOO_LARGE",
    "MODEL_LOAD_FAILED", "NO_CAPACITY", "OVERLOADED", "DEADLINE_EXCEEDED", "UNAVAILABLE", "NOT_FOUND", "FORBIDDEN", "INTERNAL",
]


def no_ext(obj: object) -> None:
    assert not isinstance(obj, msgpack.ExtType)
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str)
            no_ext(v)
    elif isinstance(obj, list):
        for v in obj:
            no_ext(v)


def test_request_holds_only_the_allowed_keys_as_plain_msgpack() -> None:
    x = np.arange(32, dtype=np.float32).reshape(2, 16)
    body = InferRequest({"x": x}).body(1234)
    msg = msgpack.unpackb(body, raw=False, ext_hook=lambda *_: pytest.fail("extension type"))
    assert msg == {"v": 1, "inputs": {"x": {"dtype": "float32", "dims": [2, 16], "data": x.tobytes()}}, "timeoutMs": 1234}
    no_ext(msg)
    full = msgpack.unpackb(InferRequest({"x": x}, ["y"], "req-1").body(5), raw=False)
    assert set(full) == {"v", "inputs", "outputs", "id", "timeoutMs"}
    assert full["outputs"] == ["y"] and full["id"] == "req-1" and full["timeoutMs"] == 5
    # 16+ keys of inputs and a relative deadline clamped to the protocol's range
    many = {f"in{i}": np.zeros(1, np.int8) for i in range(20)}
    assert len(msgpack.unpackb(InferRequest(many).body(10**9), raw=False)["inputs"]) == 20
    assert msgpack.unpackb(InferRequest(many).body(10**9), raw=False)["timeoutMs"] == 3_600_000


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_tensors_round_trip_every_dtype_little_endian(dtype: str) -> None:
    a = (np.arange(24) % 2 == 1) if dtype == "bool" else np.arange(24).astype(DTYPES[dtype])
    a = a.reshape(2, 3, 4)
    wire = to_wire("a", a.astype(DTYPES[dtype].newbyteorder(">")) if DTYPES[dtype].itemsize > 1 else a)
    assert wire["dtype"] == dtype and wire["dims"] == [2, 3, 4]
    assert wire["data"] == np.ascontiguousarray(a, dtype=DTYPES[dtype]).tobytes()  # little-endian whatever the input's order
    back = from_wire_tensor("a", wire)
    assert back.dtype == a.dtype.newbyteorder("=") and back.flags.writeable
    np.testing.assert_array_equal(back, a)
    # non-contiguous input (a transposed view) is sent in row-major order
    t = a.transpose(2, 1, 0)
    np.testing.assert_array_equal(from_wire_tensor("t", to_wire("t", t)), t)


def test_unsupported_dtypes_and_bad_tensors_are_refused() -> None:
    with pytest.raises(BadRequestError):
        to_wire("c", np.zeros(2, np.complex64))
    with pytest.raises(BadRequestError):
        to_wire("s", np.array(["a"]))
    with pytest.raises(FlotillaError):
        from_wire_tensor("y", {"dtype": "float32", "dims": [2], "data": b"\0" * 4})


def test_errors_are_typed_by_code() -> None:
    assert sorted(ERRORS_BY_CODE) == sorted(CODES)
    for code in CODES:
        e = from_wire({"code": code, "message": "m", "data": {"k": 1}})
        assert type(e) is ERRORS_BY_CODE[code] and isinstance(e, FlotillaError)
        assert (e.code, e.message, e.data) == (code, "m", {"k": 1})
        assert e.retryable == (code in ("OVERLOADED", "UNAVAILABLE", "NO_CAPACITY"))
    assert isinstance(from_wire({"code": "FORBIDDEN", "message": "no"}), ForbiddenError)
    other = from_wire({"code": "SOMETHING_NEW", "message": "x"})
    assert type(other) is FlotillaError and other.code == "SOMETHING_NEW" and not other.retryable
    assert str(UnknownModelError("nope")) == "UNKNOWN_MODEL: nope"
    assert OverloadedError("q").retryable


def test_staging_threshold_and_blob_references() -> None:
    mib = 1024 * 1024
    assert not must_stage(mib - 8192, mib) and must_stage(mib - 8191, mib)
    assert parse_blob_ref({"v": 1, "ok": True}, mib) is None
    assert parse_blob_ref({"v": 1, "blob": {"name": "abc_1-2", "size": 10}}, mib) == {"name": "abc_1-2", "size": 10}
    for bad in ({"v": 1, "blob": {"name": "a.b", "size": 1}}, {"v": 1, "blob": {"name": "a", "size": -1}},
                {"v": 1, "blob": {"name": "a", "size": 1, "x": 1}}, {"v": 1, "blob": {"name": "a", "size": 1}, "ok": True}):
        with pytest.raises(BadRequestError):
            parse_blob_ref(bad, mib)
    with pytest.raises(FlotillaError) as e:
        parse_blob_ref({"v": 1, "blob": {"name": "a", "size": mib + 1}}, mib)
    assert e.value.code == "PAYLOAD_TOO_LARGE"


def test_backoff_doubles_from_50_ms_to_500_ms_with_jitter() -> None:
    assert [backoff_delay(n, lambda: 0.5) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert backoff_delay(1, lambda: 0.0) == pytest.approx(0.04) and backoff_delay(6, lambda: 0.999) == 0.5


OUT_META = 256 + 64 + 16 * 9


@pytest.mark.parametrize(
    "signature,items,outputs_bytes",
    [
        ({"batchAxis": True, "outputs": [{"name": "y", "dtype": "float32", "shape": ["N", 10]}]}, 3, 120),
        ({"batchAxis": False, "outputs": [{"name": "a", "dtype": "int64", "shape": [2, 2]}, {"name": "b", "dtype": "uint8", "shape": []}]}, 1, 33),
        ({"batchAxis": True, "outputs": [{"name": "y", "dtype": "float32", "shape": [None, "seq"]}]}, 1, float("inf")),
        ({"batchAxis": False, "outputs": [{"name": "y", "dtype": "float32", "shape": ["N"]}]}, 1, float("inf")),
        ({"batchAxis": True, "outputs": [{"name": "y", "dtype": "complex64", "shape": [1]}]}, 1, float("inf")),
        ({"batchAxis": True, "outputs": []}, 1, 0),
    ],
)
def test_reply_bytes_at_most_as_the_typescript_sdk_counts(signature: dict, items: int, outputs_bytes: float) -> None:
    """The same bound as @flotilla/protocol's replyBytesAtMost: outputs' bytes plus room for names and meta."""
    assert reply_bytes_at_most(signature, items) == outputs_bytes + len(signature["outputs"]) * OUT_META + REPLY_META_BYTES


def test_infer_request_counts_its_rows() -> None:
    assert InferRequest({"x": np.zeros((5, 16), np.float32)}).items == 5
    assert InferRequest({"x": np.float32(1.0)}).items == 1
