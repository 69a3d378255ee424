"""Tensors and messages as docs/protocol.md describes them: plain msgpack maps, raw little-endian bytes.

Nothing here talks to NATS; :mod:`flotilla_client.client` does.
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import msgpack
import numpy as np

from .errors import BadRequestError, InternalError

PROTOCOL_VERSION = 1
#: Largest body Flotilla accepts, staged or not (bytes).
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: Bytes kept free below the server's max_payload when deciding to stage a body.
STAGING_MARGIN_BYTES = 8 * 1024
#: Longest wait the head holds an ``ensure`` reply for (ms); and the margin left for the reply.
MAX_ENSURE_WAIT_MS = 30_000
ENSURE_REPLY_MARGIN_MS = 500

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
BLOB_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A direct body's replica id: one subject token (docs/protocol.md "Direct bodies").
DIRECT_REPLICA_RE = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")
# Header of a request whose caller reads direct replies, and of the messages on a replica's body channel.
BLOBS_HEADER = "Flotilla-Blobs"
DIRECT_BLOBS = "direct"
BODY_HEADER = "Flotilla-Body"
DIRECT_WINDOW = 8
DIRECT_STALL_S = 10.0
# A ``get`` unanswered this long is sent again, until DIRECT_STALL_S (protocol DIRECT_GET_RETRY_MS): it is
# idempotent, and it may have been lost with the replica's connection while ours stayed up.
DIRECT_GET_RETRY_S = 2.5


def direct_chunk_bytes(max_payload: int) -> int:
    """Bytes per direct chunk on a server that takes ``max_payload``-byte messages (room for headers)."""
    return max(4 * 1024, max_payload - 16 * 1024)

#: Wire dtype -> numpy dtype (little-endian).
DTYPES: Dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "float16": np.dtype("<f2"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "uint64": np.dtype("<u8"),
    "bool": np.dtype("?"),
}
_BY_NUMPY = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}

WireTensor = Dict[str, Any]
ArrayLike = Union[np.ndarray, Sequence[Any]]


#: Room a successful reply takes besides its outputs' bytes, at most: its meta (names of at most 256
#: characters, a few numbers) and msgpack's framing (as ``REPLY_META_BYTES`` in @flotilla/protocol).
REPLY_META_BYTES = 2048
#: Room one output takes in a reply besides its bytes, at most: its name, dtype and up to 16 dims.
_REPLY_OUTPUT_META_BYTES = 256 + 64 + 16 * 9


def reply_bytes_at_most(signature: Mapping[str, Any], items: int) -> float:
    """The largest successful reply a model with this signature (``describe()``'s ``signature``) can
    give a request of ``items`` rows, in bytes; ``inf`` where an output's size is not known ahead (a
    dynamic dim besides the batch axis, which takes ``items``)."""
    total = REPLY_META_BYTES
    batch_axis = signature.get("batchAxis") is True
    for out in signature.get("outputs") or []:
        dt = DTYPES.get(out.get("dtype")) if isinstance(out, Mapping) else None
        if dt is None:
            return math.inf
        n = dt.itemsize
        for axis, d in enumerate(out.get("shape") or []):
            if isinstance(d, int) and not isinstance(d, bool) and d >= 0:
                n *= d
            elif axis == 0 and batch_axis and items >= 0:
                n *= items
            else:
                return math.inf
        total += n + _REPLY_OUTPUT_META_BYTES
    return total


def must_stage(size: float, max_payload: int) -> bool:
    """Whether a body of ``size`` bytes goes through the blob bucket on a server with ``max_payload``."""
    return size > max_payload - STAGING_MARGIN_BYTES


def check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequestError(f"{what} name must match {NAME_RE.pattern}, got {str(name)[:80]!r}")


def to_wire(name: str, value: ArrayLike) -> WireTensor:
    """A numpy array (or anything ``np.asarray`` takes) as ``{dtype, dims, data}``."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    dtype = _BY_NUMPY.get((arr.dtype.kind, arr.dtype.itemsize)) if arr.dtype.kind in "fiub" else None
    if dtype is None:
        supported = ", ".join(DTYPES)
        raise BadRequestError(f"input '{name}': dtype {arr.dtype} is not supported (use one of {supported})")
    data = np.ascontiguousarray(arr, dtype=DTYPES[dtype]).tobytes()
    return {"dtype": dtype, "dims": [int(d) for d in arr.shape], "data": data}


def from_wire_tensor(name: str, t: Any) -> np.ndarray:
    """A wire tensor as a (writable) numpy array of its dtype and dims; checks its size."""
    if not isinstance(t, Mapping) or set(t.keys()) != {"dtype", "dims", "data"}:
        raise InternalError(f"output '{name}' is not a tensor map of dtype, dims, data")
    dtype = DTYPES.get(t["dtype"]) if isinstance(t["dtype"], str) else None
    dims = t["dims"]
    data = t["data"]
    if dtype is None or not isinstance(dims, list) or not all(isinstance(d, int) and d >= 0 for d in dims):
        raise InternalError(f"output '{name}' has a bad dtype or dims: {str(t['dtype'])[:40]} {str(dims)[:80]}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InternalError(f"output '{name}': data is not bin")
    expected = math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        raise InternalError(f"output '{name}': {len(data)} bytes of data for dims {dims} of {t['dtype']} ({expected} expected)")
    # frombuffer copes with any offset; the copy makes the array writable and native-ordered.
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def pack(obj: Any) -> bytes:
    """Plain msgpack: maps, arrays, strings, numbers, booleans, nil, bin; never an extension type."""
    return msgpack.packb(obj, use_bin_type=True, strict_types=False)


def unpack(data: bytes) -> Dict[str, Any]:
    """A message body as a map (``DecodeError``-like failures surface as InternalError)."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as err:  # corrupt body
        raise InternalError(f"reply is not valid msgpack: {err}") from err
    if not isinstance(obj, dict):
        raise InternalError("reply is not a msgpack map")
    return obj


def _pack_map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + n.to_bytes(2, "big")


class InferRequest:
    """An inference request whose inputs are encoded once; :meth:`body` adds the time left.

    The map holds only ``v``, ``id``, ``inputs``, ``outputs`` and ``timeoutMs`` (no other key is
    accepted). Each attempt sends the deadline that is left then (relative deadlines).
    """

    def __init__(self, inputs: Mapping[str, ArrayLike], outputs: Optional[List[str]] = None, request_id: Union[str, int, None] = None) -> None:
        if not isinstance(inputs, Mapping) or not inputs:
            raise BadRequestError("inputs must be a non-empty mapping of input name to array")
        wire = {}
        for name, value in inputs.items():
            if not isinstance(name, str):
                raise BadRequestError(f"input names must be strings, got {name!r}")
            wire[name] = to_wire(name, value)
        first = next(iter(wire.values()))
        #: Rows along the batch axis (the first input's dim 0; 1 for a scalar).
        self.items: int = int(first["dims"][0]) if first["dims"] else 1
        self._head = pack("v") + pack(PROTOCOL_VERSION) + pack("inputs") + pack(wire)
        self._n = 3
        if outputs is not None:
            if isinstance(outputs, str) or not all(isinstance(o, str) for o in outputs):
                raise BadRequestError("outputs must be a list of output names")
            self._head += pack("outputs") + pack(list(outputs))
            self._n += 1
        if request_id is not None:
            if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
                raise BadRequestError("request_id must be a string or an integer")
            self._head += pack("id") + pack(request_id)
            self._n += 1

    @property
    def size(self) -> int:
        """Bytes of the encoded body (give or take the few bytes of ``timeoutMs``)."""
        return len(self._head) + 6

    def body(self, timeout_ms: int) -> bytes:
        timeout_ms = max(1, min(3_600_000, int(timeout_ms)))
        return _pack_map_header(self._n) + self._head + pack("timeoutMs") + pack(timeout_ms)


def parse_blob_ref(raw: Mapping[str, Any], max_bytes: int) -> Optional[Dict[str, Any]]:
    """The ``{name, size}`` of a staged body's reference (with ``direct``, the replica holding a direct
    reply), checked; None when ``raw`` is no reference."""
    if "blob" not in raw:
        return None
    blob = raw.get("blob")
    keys = set(blob.keys()) if isinstance(blob, Mapping) else set()
    if set(raw.keys()) != {"v", "blob"} or keys not in ({"name", "size"}, {"name", "size", "direct"}):
        raise BadRequestError("a staged body's reference holds exactly { v, blob: { name, size, direct? } }")
    direct = blob.get("direct")
    if direct is not None and (not isinstance(direct, str) or not DIRECT_REPLICA_RE.match(direct)):
        raise BadRequestError("a direct body's replica must be 1-128 letters, digits, '_', ':' or '-'")
    name, size = blob["name"], blob["size"]
    if not isinstance(name, str) or not BLOB_NAME_RE.match(name):
        raise BadRequestError("a staged body's name must be 1-64 letters, digits, '_' or '-'")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadRequestError("a staged body's size must be a non-negative integer")
    if size > max_bytes:
        from .errors import PayloadTooLargeError

        raise PayloadTooLargeError(
            f"staged body of {size} bytes exceeds the limit of {max_bytes}", data={"limitBytes": max_bytes, "sizeBytes": size}
        )
    return {"name": name, "size": size} if direct is None else {"name": name, "size": size, "direct": direct}
