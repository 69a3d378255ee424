"""The Flotilla client: call models over NATS exactly as docs/protocol.md describes.

Inference goes straight to a replica (``flotilla.<cluster>.infer.<model>``, queue group
``replicas``); the head is asked only when no replica answers (``ctl.ensure``), to bring an evicted
or scaled-down model back. Bodies above the server's ``max_payload`` − 8 KiB go straight between
this client and a replica (direct bodies): a request to the replica that answered this model last
(its ``meta.replica``), a reply from the replica that holds it. The first large request of a model
is staged through the JetStream object store ``flotilla_<cluster>_blobs``; with
``direct_bodies=False`` every large body is, both ways.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import random
import re
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import nats
import numpy as np
from nats.errors import AuthorizationError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.nuid import NUID

from .errors import (
    BadRequestError,
    ConnectionLostError,
    DeadlineExceededError,
    FlotillaError,
    ForbiddenError,
    InternalError,
    PayloadTooLargeError,
    UnavailableError,
    from_wire,
)
from .wire import (
    BLOBS_HEADER,
    BODY_HEADER,
    DEFAULT_MAX_MESSAGE_BYTES,
    DIRECT_BLOBS,
    DIRECT_REPLICA_RE,
    DIRECT_GET_RETRY_S,
    DIRECT_STALL_S,
    DIRECT_WINDOW,
    direct_chunk_bytes,
    ENSURE_REPLY_MARGIN_MS,
    MAX_ENSURE_WAIT_MS,
    PROTOCOL_VERSION,
    ArrayLike,
    InferRequest,
    check_name,
    from_wire_tensor,
    must_stage,
    reply_bytes_at_most,
    pack,
    parse_blob_ref,
    unpack,
)

DEFAULT_TIMEOUT_S = 30.0
#: Back-off after a retryable error reply: 50 ms doubling to 500 ms, ± 20 % (as the TypeScript SDK).
BACKOFF_INITIAL_S = 0.05
BACKOFF_MAX_S = 0.5
BACKOFF_JITTER = 0.2
#: Time left for a control reply when no deadline says otherwise (s).
CONTROL_TIMEOUT_S = 10.0
#: After a ``describe`` that could not give a model's signature, the next request asks again after this long (s).
SIGNATURE_RETRY_S = 30.0
#: Staged bodies older than this are removed by the server (the bucket's TTL when this client creates it).
BLOB_TTL_S = 600.0
#: The four roles of ``flotilla auth init`` (docs/security.md); each gets its replies under ``_INBOX_<role>``.
ROLES = ("caller", "operator", "worker", "head")
_ROLE_LINE = re.compile(r"^#\s*flotilla-role:\s*(\S+)\s*$", re.IGNORECASE)
# nats-server's asynchronous -ERR for a refused action: 'Permissions Violation for Publish to "subject"'
# (nats-py 2.16 hands it to error_cb all in lower case, the subject included: compared without case).
_VIOLATION = re.compile(r"Permissions Violation for (Publish|Subscription) to \"?([^\"\s]+)\"?", re.IGNORECASE)


def seed_from_file_text(text: str) -> str:
    """The nkey seed in a seed file's text: its ``SU…`` line (``#`` comments and blank lines ignored)."""
    lines = [line.strip() for line in text.splitlines()]
    for line in lines:
        if line.startswith("SU"):
            return line
    # Not a user seed we recognise: hand the content over as it is (nkeys reports the problem).
    return "".join(line for line in lines if line and not line.startswith("#"))


def seed_file_role(text: str, file_name: Optional[str] = None) -> Optional[str]:
    """The role a seed file was made for: its ``# flotilla-role: <role>`` line, else its file name
    (``caller.nk`` → caller), else None (as the TypeScript SDK's ``seedFileRole``)."""
    for line in text.splitlines():
        m = _ROLE_LINE.match(line.strip())
        if m and m.group(1).lower() in ROLES:
            return m.group(1).lower()
    if file_name:
        base = re.sub(r"\.(nk|seed|nkey)$", "", os.path.basename(file_name), flags=re.IGNORECASE).lower()
        if base in ROLES:
            return base
    return None


def backoff_delay(n: int, rand: Callable[[], float] = random.random) -> float:
    """The ``n``-th back-off (1-based), seconds: 50 ms × 2^(n-1), capped at 500 ms, spread ± 20 %."""
    nominal = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** max(0, n - 1))
    spread = nominal * BACKOFF_JITTER * (2 * rand() - 1)
    return min(BACKOFF_MAX_S, max(0.0, nominal + spread))


class Client:
    """An asyncio client of one Flotilla cluster.

    ``servers``: a NATS URL, a comma-separated list or a list of URLs. The connection opens on
    first use (or ``await client.connect()``); ``async with Client(...) as c:`` closes it.
    ``token``/``nkey_seed_file``/``creds_file`` authenticate; ``inbox_prefix`` is the reply inbox
    prefix the role may subscribe to (``_INBOX_caller`` with ``flotilla auth`` credentials). A seed
    file written by ``flotilla auth init`` names its role, and the inbox prefix follows it by itself
    (``# flotilla-role: caller`` line, else the file name ``caller.nk``), as in the TypeScript SDK.
    Credentials the server refuses, or none where it requires some, fail the connection at once
    with FORBIDDEN; an action the role may not do fails FORBIDDEN as soon as the server says so.
    """

    def __init__(
        self,
        servers: Union[str, Sequence[str]] = "nats://127.0.0.1:4222",
        cluster: str = "default",
        *,
        token: Optional[str] = None,
        nkey_seed_file: Optional[str] = None,
        creds_file: Optional[str] = None,
        inbox_prefix: Optional[str] = None,
        name: str = "flotilla-python",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        connect_timeout: float = 5.0,
        direct_bodies: bool = True,
        direct_replies: Optional[bool] = None,
    ) -> None:
        check_name("cluster", cluster)
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        self.servers: List[str] = list(servers)
        self.cluster = cluster
        self.max_message_bytes = max_message_bytes
        self._prefix = f"flotilla.{cluster}"
        self._blob_bucket = f"flotilla_{cluster}_blobs"
        self._connect_opts: Dict[str, Any] = {"name": name, "connect_timeout": connect_timeout}
        if token is not None:
            self._connect_opts["token"] = token
        self._nkey_seed_file = nkey_seed_file
        if creds_file is not None:
            self._connect_opts["user_credentials"] = creds_file
        if inbox_prefix is not None:
            self._connect_opts["inbox_prefix"] = inbox_prefix
        self._credentials = ("nkey seed " + nkey_seed_file if nkey_seed_file is not None else
                             "creds file " + creds_file if creds_file is not None else
                             "a token" if token is not None else "no credentials")
        self._nc: Optional[Any] = None
        self._connecting: Optional[asyncio.Lock] = None
        self._store: Optional[Any] = None
        # Subjects the server refused to this connection (permission violations), with when.
        self._refused: Dict[str, float] = {}
        # Requests in flight, oldest first: (subject, future failed with FORBIDDEN if the server refuses it).
        self._pending: List[Tuple[str, "asyncio.Future[None]"]] = []
        self._auth_error: Optional[Exception] = None
        self._inbox_refused: Optional[ForbiddenError] = None
        self._nuid = NUID()
        # Bodies over max_payload go straight between this client and a replica (docs/protocol.md
        # "Direct bodies"), not through the blob bucket; False: staged, as workers before direct
        # bodies need. ``direct_replies`` is its earlier name.
        self._direct = direct_bodies if direct_replies is None else direct_replies
        # The replica that answered each model last: where a large request goes direct.
        self._replicas: Dict[str, str] = {}
        # Each model's signature as the head described it (None: not known), and when it was asked.
        self._signatures: Dict[str, Tuple[Optional[Dict[str, Any]], float]] = {}
        self._describing: Dict[str, "asyncio.Future[None]"] = {}
        # A direct reply's ``get`` unanswered this long is asked again (s; tests shorten it).
        self.direct_get_retry = DIRECT_GET_RETRY_S

    # ---------- connection ----------

    async def connect(self) -> "Client":
        """Opens the connection (done on first use otherwise). UNAVAILABLE when NATS cannot be reached."""
        await self._connection()
        return self

    async def _connection(self) -> Any:
        if self._nc is not None and not self._nc.is_closed:
            return self._nc
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._nc is not None and not self._nc.is_closed:
                return self._nc
            opts = {**self._connect_opts, **self._seed_opts()}
            self._auth_error = None
            try:
                # One try per server now (an unreachable NATS fails fast, UNAVAILABLE); once
                # connected, reconnect for ever (requests in the meantime end at their deadline).
                nc = await nats.connect(
                    servers=self.servers,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.1,
                    **opts,
                )
            except Exception as err:
                if self._auth_error is not None or isinstance(err, AuthorizationError) or "authorization violation" in str(err).lower():
                    # nats-py reports a refused CONNECT as "no servers available": say what happened.
                    raise ForbiddenError(
                        f"the NATS server at {','.join(self.servers)} refused this connection ({self._credentials}): "
                        "Authorization Violation; pass the credentials of a role allowed on it "
                        "(nkey_seed_file=, creds_file= or token=; see docs/security.md)",
                        data={"operation": "connect", "credentials": self._credentials},
                    ) from (self._auth_error or err)
                raise UnavailableError(f"cannot connect to NATS at {','.join(self.servers)}: {err}") from err
            self._inbox_refused = None
            nc.options["max_reconnect_attempts"] = -1
            nc.options["reconnect_time_wait"] = 1.0
            self._nc = nc
            self._store = None
            return self._nc

    def _seed_opts(self) -> Dict[str, Any]:
        """nats-py's options for ``nkey_seed_file``: the seed line of the file (``flotilla auth init``
        writes comment lines before it, which nats-py's own reader would take for the seed) and the
        inbox prefix of the role the file names, unless ``inbox_prefix`` was given."""
        if self._nkey_seed_file is None:
            return {}
        try:
            import nkeys  # noqa: F401 (nats-py imports it to sign the server's nonce)
        except ImportError as err:
            raise BadRequestError("nkey_seed_file needs the nkeys package: pip install 'flotilla-client[nkeys]'") from err
        try:
            with open(self._nkey_seed_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise BadRequestError(f"cannot read the nkey seed file {self._nkey_seed_file}: {err}") from err
        opts: Dict[str, Any] = {"nkeys_seed_str": seed_from_file_text(text)}
        role = seed_file_role(text, self._nkey_seed_file)
        if role is not None and "inbox_prefix" not in self._connect_opts:
            opts["inbox_prefix"] = f"_INBOX_{role}"
        return opts

    async def _on_disconnected(self) -> None:
        """The connection was lost: what was in its socket is gone, both ways, so every request in
        flight fails at once (ConnectionLostError, UNAVAILABLE) instead of waiting for a reply
        that may never come; nats-py sends what is published meanwhile once it is back."""
        for subject, lost in self._pending:
            if not lost.done():
                lost.set_exception(ConnectionLostError(f"the connection to NATS was lost while a request on {subject} was in flight",
                                                       data={"subject": subject}))

    async def _on_error(self, err: Exception) -> None:
        text = str(err)
        if isinstance(err, AuthorizationError) or "authorization violation" in text.lower():
            self._auth_error = err
            return
        m = _VIOLATION.search(text)
        if m is None:
            return
        # 'nats: Permissions Violation for Publish to "flotilla.c.ctl.deploy"'
        operation, subject = m.group(1).lower(), m.group(2)
        self._refused[subject] = time.monotonic()
        if operation != "publish":
            if subject.lower().startswith("_inbox"):
                # The reply inbox itself: no request on this connection can get its reply.
                self._inbox_refused = ForbiddenError(
                    f"the NATS server does not allow this connection to subscribe to its reply inbox {subject}: "
                    f"pass the inbox_prefix its role may use (_INBOX_<role> with flotilla auth credentials)",
                    data={"subject": subject, "operation": "subscribe"},
                )
                for _, refused in self._pending:
                    if not refused.done():
                        refused.set_exception(self._inbox_refused)
            return
        # One refused publish: the oldest request in flight to that subject fails now (as the
        # TypeScript SDK's requester does), not at its timeout.
        for pending, refused in self._pending:
            if pending.lower() == subject.lower() and not refused.done():
                refused.set_exception(ForbiddenError(
                    f"the NATS server does not allow this connection to publish on {pending}: "
                    f"its credentials ({self._credentials}) lack the role",
                    data={"subject": pending, "operation": "publish"},
                ))
                break

    async def _request(self, nc: Any, subject: str, body: bytes, timeout: float, headers: Optional[Dict[str, str]] = None) -> Any:
        """``nc.request`` that fails FORBIDDEN as soon as the server refuses the publish (or the reply inbox)."""
        if self._inbox_refused is not None:
            raise self._inbox_refused
        refused: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
        entry = (subject, refused)
        self._pending.append(entry)
        extra = {"headers": headers} if headers else {}
        request = asyncio.ensure_future(nc.request(subject, body, timeout=timeout, **extra))
        try:
            await asyncio.wait({request, refused}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            request.cancel()
            raise
        finally:
            self._pending.remove(entry)
        if request.done():
            if refused.done() and not refused.cancelled():
                refused.exception()  # retrieved: a reply won the race
            return request.result()
        request.cancel()
        refused.result()  # raises the ForbiddenError
        raise InternalError("unreachable")  # pragma: no cover

    def _forbidden(self, subject: str, since: float) -> Optional[ForbiddenError]:
        for refused, at in self._refused.items():
            r, sub = refused.lower(), subject.lower()  # nats-py lower-cases the server's message
            if at >= since and (r == sub or sub.startswith(r.rstrip(">"))):
                return ForbiddenError(f"the NATS server refused {subject} to this connection's credentials", data={"subject": subject})
        return None

    async def close(self) -> None:
        """Closes the connection (safe to call twice)."""
        nc, self._nc, self._store = self._nc, None, None
        for pending in list(self._describing.values()):
            pending.cancel()
        if nc is not None and not nc.is_closed:
            # Closing: a connection lost meanwhile must not start reconnecting (new tasks nobody awaits).
            nc.options["allow_reconnect"] = False
            try:
                await nc.drain()
            except Exception:
                await nc.close()

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def max_payload(self) -> int:
        """The server's max_payload (bytes), from its INFO."""
        return int(self._nc.max_payload) if self._nc is not None else 1024 * 1024

    # ---------- staging ----------

    async def _blobs(self) -> Any:
        if self._store is not None:
            return self._store
        nc = await self._connection()
        js = nc.jetstream()
        since = time.monotonic()
        try:
            try:
                store = await js.object_store(self._blob_bucket)
            except BucketNotFoundError:
                cfg = ObjectStoreConfig(ttl=BLOB_TTL_S, storage=StorageType.MEMORY)
                store = await js.create_object_store(self._blob_bucket, config=cfg)
        except Exception as err:
            forbidden = self._forbidden(f"$JS.API.STREAM.INFO.OBJ_{self._blob_bucket}", since)
            if forbidden:
                raise forbidden from err
            raise UnavailableError(f"blob bucket {self._blob_bucket} unavailable (JetStream enabled?): {err}") from err
        self._store = store
        return store

    async def _stage(self, body: bytes) -> Dict[str, Any]:
        store = await self._blobs()
        name = self._nuid.next().decode()  # 22 letters and digits
        chunk = max(64 * 1024, self.max_payload - 16 * 1024)
        meta = ObjectMeta(name=name, options=ObjectMetaOptions(max_chunk_size=chunk))
        try:
            await store.put(name, body, meta=meta)
        except Exception as err:
            raise UnavailableError(f"staging {len(body)} bytes in {self._blob_bucket} failed: {err}") from err
        return {"name": name, "size": len(body)}

    async def _drop(self, name: str) -> None:
        """Removes a staged body that may not have been taken (best effort)."""
        try:
            store = await self._blobs()
            await store.delete(name)
        except Exception:
            pass

    async def _take(self, ref: Mapping[str, Any]) -> Dict[str, Any]:
        """The staged body a reference names: checked, fetched, removed, decoded."""
        store = await self._blobs()
        name, size = ref["name"], ref["size"]
        try:
            info = await store.get_info(name)
        except ObjectNotFoundError as err:
            raise UnavailableError(f"staged body {name} not found (expired or already taken)") from err
        except Exception as err:
            raise UnavailableError(f"fetching staged body {name} from {self._blob_bucket} failed: {err}") from err
        if info.size != size:
            await self._drop(name)
            raise BadRequestError(f"staged body {name} has {info.size} bytes, its reference says {size}")
        try:
            try:
                data = await self._read_chunks(info)
            except Exception:
                buf = io.BytesIO()  # nats-py's own reader (an ordered consumer): slower, always there
                await store.get(name, writeinto=buf)
                data = buf.getvalue()
        except Exception as err:
            raise UnavailableError(f"fetching staged body {name} from {self._blob_bucket} failed: {err}") from err
        asyncio.ensure_future(self._drop(name))
        raw = unpack(data)
        if "blob" in raw:
            raise BadRequestError("a staged body may not itself be a blob reference")
        return raw

    async def _read_chunks(self, info: Any) -> bytes:
        """An object's chunks by direct gets, one after the other, digest checked (~20x faster than nats-py's get)."""
        js = (await self._connection()).jetstream()
        stream = f"OBJ_{self._blob_bucket}"
        subject = f"$O.{self._blob_bucket}.C.{info.nuid}"
        parts: List[bytes] = []
        h = hashlib.sha256()
        seq = 1
        for _ in range(info.chunks or 0):
            msg = await js.get_msg(stream, seq=seq, subject=subject, direct=True, next=True)
            parts.append(msg.data or b"")
            h.update(parts[-1])
            seq = int(msg.seq) + 1
        data = b"".join(parts)
        norm = lambda d: d.replace("+", "-").replace("/", "_").rstrip("=")  # noqa: E731 (base64 or base64url, padded or not)
        digest = norm((info.digest or "").split("=", 1)[-1])
        if len(data) != info.size or norm(base64.urlsafe_b64encode(h.digest()).decode()) != digest:
            raise InternalError(f"staged body {info.name}: size or digest does not match")
        return data

    async def _unstage(self, raw: Dict[str, Any], model: Optional[str] = None) -> Dict[str, Any]:
        ref = parse_blob_ref(raw, self.max_message_bytes)
        if ref is None:
            return raw
        if "direct" in ref:
            if model is None:
                raise BadRequestError("a direct reference answers only an inference request")
            return await self._pull(model, ref)
        return await self._take(ref)

    async def _pull(self, model: str, ref: Mapping[str, Any]) -> Dict[str, Any]:
        """A direct reply (docs/protocol.md "Direct bodies"): read in ``get`` chunks from the replica
        that holds it, on its body channel, at most DIRECT_WINDOW unanswered; then decoded."""
        subject = self._body_channel(model, ref["direct"])
        name, size = ref["name"], ref["size"]
        chunk = direct_chunk_bytes(self.max_payload)
        out = bytearray(size)

        async def get(offset: int) -> None:
            length = min(chunk, size - offset)
            msg = await self._chunk(subject, b"", f"get {name} {offset} {length}", retry=self.direct_get_retry)
            if len(msg.data) != length:
                raise BadRequestError(f"the replica answered {len(msg.data)} bytes for a chunk of {length} at {offset}")
            out[offset:offset + length] = msg.data

        await self._each_chunk(size, chunk, get)
        raw = unpack(bytes(out))
        if not isinstance(raw, dict):
            raise BadRequestError("a direct body must be a map")
        if "blob" in raw:
            raise BadRequestError("a staged body may not itself be a blob reference")
        return raw

    async def _push(self, model: str, replica: str, name: str, body: bytes) -> None:
        """A direct request body (docs/protocol.md "Direct bodies"): ``put`` chunks in order to the
        replica's body channel, at most DIRECT_WINDOW unanswered. Raises the replica's coded error,
        or UNAVAILABLE when a chunk finds nobody or goes unanswered."""
        subject = self._body_channel(model, replica)
        chunk = direct_chunk_bytes(self.max_payload)
        view = memoryview(body)

        async def put(offset: int) -> None:
            await self._chunk(subject, view[offset:offset + chunk].tobytes(), f"put {name} {offset}")

        await self._each_chunk(len(body), chunk, put)

    def _body_channel(self, model: str, replica: str) -> str:
        """A replica's body channel (docs/protocol.md "Direct bodies")."""
        return f"{self._prefix}.infer.{model}.{replica}~body"

    async def _chunk(self, subject: str, data: bytes, op: str, retry: Optional[float] = None) -> Any:
        """One chunk request on a body channel (``op``: its ``Flotilla-Body`` header); the answer, or
        the replica's coded error, or UNAVAILABLE when nobody answers within the stall time. With
        ``retry`` (s; gets only: they are idempotent) an unanswered request is sent again that often."""
        deadline = time.monotonic() + DIRECT_STALL_S
        while True:
            nc = await self._connection()
            left = deadline - time.monotonic()
            try:
                msg = await self._request(nc, subject, data, max(0.001, min(retry or left, left)), {BODY_HEADER: op})
                break
            except NoRespondersError as err:
                raise UnavailableError(f"nobody answers on {subject}: the replica is gone") from err
            except NatsTimeoutError as err:
                if retry is None or left <= retry:
                    raise UnavailableError(f"a chunk on {subject} was not answered within {DIRECT_STALL_S:g} s") from err
        if (msg.headers or {}).get(BODY_HEADER) == "error":
            raise from_wire(unpack(msg.data).get("error"))
        return msg

    @staticmethod
    async def _each_chunk(size: int, chunk: int, send: Callable[[int], Awaitable[None]]) -> None:
        """``send(offset)`` for each chunk of ``size`` bytes, at most DIRECT_WINDOW at once; the first
        failure is raised and the rest cancelled. The tasks are created in order and the semaphore
        wakes its waiters FIFO, so the chunks go out in order."""
        sem = asyncio.Semaphore(DIRECT_WINDOW)

        async def one(offset: int) -> None:
            async with sem:
                await send(offset)

        tasks = [asyncio.ensure_future(one(off)) for off in range(0, size, chunk)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _request_direct(self, nc: Any, model: str, replica: str, body: bytes, timeout: float) -> Any:
        """Sends the reference of a direct request body to ``replica``'s own subject, then its chunks;
        returns the reply. A push that fails fails the request at once (the replica would only hear
        no more chunks)."""
        name = self._nuid.next().decode()
        ref = pack({"v": PROTOCOL_VERSION, "blob": {"name": name, "size": len(body), "direct": replica}})
        request = asyncio.ensure_future(
            self._request(nc, f"{self._prefix}.infer.{model}.{replica}", ref, timeout, {BLOBS_HEADER: DIRECT_BLOBS}))
        await asyncio.sleep(0)  # the reference is published before the chunks (one connection keeps the order)
        push = asyncio.ensure_future(self._push(model, replica, name, body))
        try:
            done, _ = await asyncio.wait({request, push}, return_when=asyncio.FIRST_COMPLETED)
            if push in done and push.exception() is not None and not request.done():
                raise push.exception()  # type: ignore[misc]
            return await request
        finally:
            push.cancel()
            request.cancel()
            await asyncio.gather(push, request, return_exceptions=True)

    # ---------- control plane ----------

    async def _control(self, op: str, params: Mapping[str, Any], timeout: float = CONTROL_TIMEOUT_S) -> Any:
        """``{ v: 1, ...params }`` to ``flotilla.<cluster>.ctl.<op>``; the result, or the typed error."""
        nc = await self._connection()
        subject = f"{self._prefix}.ctl.{op}"
        since = time.monotonic()
        deadline = since + timeout
        body = pack({"v": PROTOCOL_VERSION, **params})
        try:
            while True:
                try:
                    msg = await self._request(nc, subject, body, max(0.001, deadline - time.monotonic()))
                    break
                except ConnectionLostError:
                    # Control operations are idempotent: sent again on the new connection, within the timeout.
                    if deadline - time.monotonic() < 0.05:
                        raise
        except NoRespondersError as err:
            raise UnavailableError(f"no head is answering for cluster '{self.cluster}' (is it running?)") from err
        except NatsTimeoutError as err:
            forbidden = self._forbidden(subject, since)
            if forbidden:
                raise forbidden from err
            raise UnavailableError(f"no head answered {subject} within {timeout:.1f} s") from err
        reply = await self._unstage(unpack(msg.data))
        if reply.get("ok") is True:
            return reply.get("result")
        raise from_wire(reply.get("error"))

    def _learn_signature(self, model: str) -> None:
        """Asks the head for ``model``'s signature in the background, once (again after
        SIGNATURE_RETRY_S if it could not say): once it is known, a request whose every possible reply
        fits one message goes without the ``Flotilla-Blobs`` header, which costs the replica CPU on
        every request."""
        known = self._signatures.get(model)
        now = time.monotonic()
        if model in self._describing or (known is not None and (known[0] is not None or now - known[1] < SIGNATURE_RETRY_S)):
            return

        async def learn() -> None:
            sig: Optional[Dict[str, Any]] = None
            try:
                got = (await self.describe(model)).get("signature")
                sig = got if isinstance(got, dict) else None
            except Exception:  # no head, an unknown model, not allowed: requests keep the header
                pass
            finally:
                self._signatures[model] = (sig, time.monotonic())
                self._describing.pop(model, None)

        self._describing[model] = asyncio.ensure_future(learn())

    def _replies_fit(self, model: str, request: InferRequest) -> bool:
        """Whether every reply ``model`` can give ``request`` fits one message (False while not known)."""
        known = self._signatures.get(model)
        if known is None or known[0] is None:
            return False
        return not must_stage(reply_bytes_at_most(known[0], request.items), self.max_payload)

    async def describe(self, model: str, *, timeout: float = CONTROL_TIMEOUT_S) -> Dict[str, Any]:
        """The model's DeploymentStatus: ``{spec, createdAt, ready, replicas, pendingReason?}``."""
        check_name("model", model)
        return await self._control("describe", {"name": model}, timeout)

    async def list(self, *, timeout: float = CONTROL_TIMEOUT_S) -> List[Dict[str, Any]]:
        """Every deployment's status."""
        return await self._control("list", {}, timeout)

    async def ensure(self, model: str, wait: float = 0.0, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Asks the head to (re)place ``model``; with ``wait`` (s, capped at 30) the reply waits for a ready replica."""
        check_name("model", model)
        wait_ms = max(0, min(MAX_ENSURE_WAIT_MS, int(wait * 1000)))
        reply_timeout = timeout if timeout is not None else wait_ms / 1000 + ENSURE_REPLY_MARGIN_MS / 1000
        return await self._control("ensure", {"name": model, "waitMs": wait_ms}, reply_timeout)

    async def _bring_back(self, model: str, deadline: float) -> bool:
        """No replica is subscribed: ``ctl.ensure`` with what is left of the deadline. True when one is ready."""
        left = deadline - time.monotonic()
        wait_ms = max(0, min(MAX_ENSURE_WAIT_MS, int(left * 1000) - ENSURE_REPLY_MARGIN_MS))
        status = await self._control("ensure", {"name": model, "waitMs": wait_ms}, wait_ms / 1000 + ENSURE_REPLY_MARGIN_MS / 1000)
        reason = status.get("pendingReason") or {}
        ready = int(status.get("ready") or 0)
        if ready == 0 and reason.get("code") in ("MODEL_LOAD_FAILED", "BAD_REQUEST"):
            raise from_wire(reason)
        return ready > 0

    # ---------- inference ----------

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, ArrayLike],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        outputs: Optional[Sequence[str]] = None,
        attempt_timeout: Optional[float] = None,
        retries: Optional[int] = None,
        request_id: Union[str, int, None] = None,
        on_retry: Optional[Callable[[FlotillaError, int, float], None]] = None,
    ) -> Dict[str, np.ndarray]:
        """Runs ``model`` on ``inputs`` (name → numpy array, batch on axis 0) and returns its outputs.

        ``timeout`` (s) bounds the whole call: queueing, bringing an evicted model back, the run and
        the transfers; each attempt sends the time left as ``timeoutMs``. OVERLOADED, UNAVAILABLE
        and NO_CAPACITY replies are retried after a back-off (50 ms doubling to 500 ms, ± 20 %),
        an attempt with no reply within ``attempt_timeout`` (default max(1 s, timeout / 3)) at
        once, up to ``retries`` times (default: until the deadline, then DEADLINE_EXCEEDED).
        ``on_retry(error, attempt, delay_s)`` is called before each retry. Errors are typed:
        :class:`~flotilla_client.errors.FlotillaError` subclasses with ``code``, ``message``, ``data``.
        """
        return (await self.infer_with_meta(model, inputs, timeout=timeout, outputs=outputs, attempt_timeout=attempt_timeout,
                                           retries=retries, request_id=request_id, on_retry=on_retry))["outputs"]

    async def infer_with_meta(
        self,
        model: str,
        inputs: Mapping[str, ArrayLike],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        outputs: Optional[Sequence[str]] = None,
        attempt_timeout: Optional[float] = None,
        retries: Optional[int] = None,
        request_id: Union[str, int, None] = None,
        on_retry: Optional[Callable[[FlotillaError, int, float], None]] = None,
    ) -> Dict[str, Any]:
        """Like :meth:`infer`; returns ``{"outputs", "meta", "attempts", "id"}`` (``meta``: worker, replica, batch, queueMs, runMs)."""
        check_name("model", model)
        if not (timeout > 0 and timeout <= 3600):
            raise BadRequestError(f"timeout must be in (0, 3600] seconds, got {timeout}")
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise BadRequestError(f"retries must be a non-negative integer, got {retries}")
        request = InferRequest(inputs, list(outputs) if outputs is not None else None, request_id)
        if request.size > self.max_message_bytes:
            raise PayloadTooLargeError(
                f"request of {request.size} bytes exceeds the limit of {self.max_message_bytes}",
                data={"limitBytes": self.max_message_bytes, "sizeBytes": request.size},
            )
        deadline = time.monotonic() + timeout
        per_attempt = attempt_timeout if attempt_timeout is not None else max(1.0, timeout / 3)
        nc = await self._connection()
        if self._direct:
            self._learn_signature(model)
        subject = f"{self._prefix}.infer.{model}"
        sent = 0
        failures = 0  # retryable failures so far (retries = failures)
        backoffs = 0  # back-offs after error replies
        waits = 0  # waits for a model being brought back
        last: Optional[FlotillaError] = None

        def retry_or_raise(err: FlotillaError) -> None:
            nonlocal failures
            failures += 1
            if retries is not None and failures > retries:
                raise err

        def again_at_once(err: UnavailableError) -> None:
            """A direct transfer's replica, or the connection, went: the replica is forgotten unless only
            the connection was lost (then it is still there); a retry, sent at once."""
            nonlocal last
            if not isinstance(err, ConnectionLostError):
                self._replicas.pop(model, None)
            last = err
            retry_or_raise(err)
            if on_retry:
                on_retry(err, sent, 0.0)

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceededError(f"'{model}' did not answer within {timeout:g} s ({sent} attempts)") from last
            body = request.body(int(left * 1000))
            staged: Optional[str] = None
            # A large body goes straight to the replica that answered this model last, if one did.
            direct_to = self._replicas.get(model) if self._direct and must_stage(len(body), self.max_payload) else None
            if must_stage(len(body), self.max_payload) and direct_to is None:
                ref = await self._stage(body)
                staged = ref["name"]
                body = pack({"v": PROTOCOL_VERSION, "blob": ref})
                left = deadline - time.monotonic()
                if left <= 0:
                    await self._drop(staged)
                    continue
            sent += 1
            since = time.monotonic()
            try:
                if direct_to is not None:
                    msg = await self._request_direct(nc, model, direct_to, body, min(left, per_attempt))
                else:
                    # This client reads direct replies: a reply over max_payload comes from the replica
                    # itself. The header only when the model's reply may need it (headers cost the replica).
                    reads = self._direct and not self._replies_fit(model, request)
                    msg = await self._request(nc, subject, body, min(left, per_attempt), {BLOBS_HEADER: DIRECT_BLOBS} if reads else None)
            except ForbiddenError:
                if staged:
                    await self._drop(staged)
                raise
            except NoRespondersError:
                if direct_to is not None:
                    # That replica is gone: through the bucket and the queue group, at once (not a retry).
                    self._replicas.pop(model, None)
                    continue
                # Nobody received it: not a retry. Ask the head to bring the model back.
                if staged:
                    await self._drop(staged)
                if await self._bring_back(model, deadline):
                    continue
                waits += 1
                last = UnavailableError(f"no replica of '{model}' is ready yet")
                delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** (waits - 1))
                if deadline - time.monotonic() <= delay:
                    raise DeadlineExceededError(f"'{model}' had no ready replica within {timeout:g} s ({sent} attempts)") from last
                await asyncio.sleep(delay)
                continue
            except UnavailableError as err:
                if direct_to is None and not isinstance(err, ConnectionLostError):
                    raise
                if staged:
                    await self._drop(staged)
                again_at_once(err)
                continue
            except NatsTimeoutError as err:
                if staged:
                    await self._drop(staged)
                if direct_to is not None:
                    self._replicas.pop(model, None)  # unresponsive: the queue group next
                forbidden = self._forbidden(subject, since)
                if forbidden:
                    raise forbidden from err
                last = DeadlineExceededError(f"'{model}' did not answer on {subject} within {min(left, per_attempt):.3g} s")
                retry_or_raise(last)
                if on_retry:
                    on_retry(last, sent, 0.0)
                continue
            raw_reply = unpack(msg.data)
            try:
                reply = await self._unstage(raw_reply, model)
            except UnavailableError as err:
                raw_ref = raw_reply.get("blob") if isinstance(raw_reply, dict) else None
                if not (isinstance(raw_ref, dict) and "direct" in raw_ref):
                    raise
                again_at_once(err)  # a direct reply that could not be read
                continue
            replica = (reply.get("meta") or {}).get("replica") if isinstance(reply.get("meta"), dict) else None
            if isinstance(replica, str) and DIRECT_REPLICA_RE.match(replica):
                self._replicas[model] = replica
            if reply.get("ok") is True:
                outs = reply.get("outputs")
                if not isinstance(outs, dict):
                    raise InternalError("reply has no outputs map")
                arrays = {name: from_wire_tensor(name, t) for name, t in outs.items()}
                return {"outputs": arrays, "meta": reply.get("meta") or {}, "attempts": sent, "id": reply.get("id")}
            err = from_wire(reply.get("error"))
            if staged:
                await self._drop(staged)  # refused before it was fetched (OVERLOADED & co)
            if not err.retryable:
                raise err
            retry_or_raise(err)
            last = err
            backoffs += 1
            delay = backoff_delay(backoffs)
            if deadline - time.monotonic() <= delay:
                raise DeadlineExceededError(f"'{model}' did not answer within {timeout:g} s ({sent} attempts; last: {err})",
                                            data={"last": {"code": err.code, "message": err.message}}) from err
            if on_retry:
                on_retry(err, sent, delay)
            await asyncio.sleep(delay)


async def _finish_tasks() -> None:
    """Cancels every other task on the running loop and waits for them, as ``asyncio.run`` does at
    its end; again while cancelling left new ones (a connection's tasks may start others as they end)."""
    for _ in range(5):
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not tasks:
            break
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class SyncClient:
    """A synchronous client: a :class:`Client` on an event loop of its own, in a daemon thread.

    Thread-safe: calls from several threads run concurrently on the one connection.
    ``with SyncClient(...) as c: c.infer(...)`` closes it.
    """

    def __init__(self, servers: Union[str, Sequence[str]] = "nats://127.0.0.1:4222", cluster: str = "default", **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flotilla-client-loop", daemon=True)
        self._thread.start()
        self._closed = False
        self.client = Client(servers, cluster, **kwargs)

    def _run(self, coro: Any, timeout: Optional[float] = None) -> Any:
        if self._closed:
            coro.close()
            raise UnavailableError("this SyncClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def connect(self) -> "SyncClient":
        self._run(self.client.connect())
        return self

    def infer(self, model: str, inputs: Mapping[str, ArrayLike], **kwargs: Any) -> Dict[str, np.ndarray]:
        """See :meth:`Client.infer`."""
        return self._run(self.client.infer(model, inputs, **kwargs))

    def infer_with_meta(self, model: str, inputs: Mapping[str, ArrayLike], **kwargs: Any) -> Dict[str, Any]:
        return self._run(self.client.infer_with_meta(model, inputs, **kwargs))

    def describe(self, model: str, **kwargs: Any) -> Dict[str, Any]:
        return self._run(self.client.describe(model, **kwargs))

    def list(self, **kwargs: Any) -> List[Dict[str, Any]]:
        return self._run(self.client.list(**kwargs))

    def ensure(self, model: str, wait: float = 0.0, **kwargs: Any) -> Dict[str, Any]:
        return self._run(self.client.ensure(model, wait, **kwargs))

    def close(self) -> None:
        """Closes the connection and stops the loop thread (safe to call twice)."""
        if self._closed:
            return
        try:
            self._run(self.client.close(), 10)
        finally:
            try:
                # nats-py's close cancels its reader, flusher and ping tasks without awaiting them:
                # let them finish before the loop stops, or they are destroyed pending (a warning at
                # garbage collection, and their finally blocks never run).
                self._run(_finish_tasks(), 5)
            except Exception:
                pass
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
