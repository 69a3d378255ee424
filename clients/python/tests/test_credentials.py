"""Credentials and refusals without a cluster: seed files of `flotilla auth init`, and FORBIDDEN as soon
as nats-server says so (its asynchronous -ERR), never at the request's timeout. The same paths against a
real nats-server with the generated permissions: test_auth.py (run from python-auth.test.ts)."""
from __future__ import annotations

import asyncio
import time
from typing import Any, List

import nats
import numpy as np
import pytest
from nats.errors import Error as NatsError
from nats.errors import NoServersError

from flotilla_client import BadRequestError, Client, ForbiddenError
from flotilla_client.client import seed_file_role, seed_from_file_text

SEED = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU"  # nkeys' documentation example
FILE_TEXT = f"# flotilla-role: caller\n# An nkey user seed: keep it secret.\n{SEED}\n"


def test_seed_files_of_flotilla_auth_init_name_their_seed_and_role() -> None:
    assert seed_from_file_text(FILE_TEXT) == SEED
    assert seed_from_file_text(f"\n  {SEED}  \n") == SEED
    assert seed_from_file_text("# c\nnot-a-seed\n") == "not-a-seed"  # handed over: nkeys reports it
    assert seed_file_role(FILE_TEXT) == "caller"
    assert seed_file_role("# Flotilla-Role: Worker\nSU..", "/x/caller.nk") == "worker"  # the line wins
    assert seed_file_role(SEED, "/keys/operator.nk") == "operator"
    assert seed_file_role(SEED, "head.seed") == "head"
    assert seed_file_role("# flotilla-role: admin\n" + SEED, "mine.nk") is None
    assert seed_file_role(SEED) is None


def test_a_seed_file_gives_its_seed_and_its_roles_inbox_prefix(tmp_path: Any) -> None:
    pytest.importorskip("nkeys", reason="nkeys is not installed (scripts/setup installs it in .cache/py)")
    f = tmp_path / "k.nk"
    f.write_text(FILE_TEXT)
    assert Client(nkey_seed_file=str(f))._seed_opts() == {"nkeys_seed_str": SEED, "inbox_prefix": "_INBOX_caller"}
    # an explicit inbox prefix is kept
    assert Client(nkey_seed_file=str(f), inbox_prefix="_INBOX_svc")._seed_opts() == {"nkeys_seed_str": SEED}
    with pytest.raises(BadRequestError, match="cannot read the nkey seed file"):
        Client(nkey_seed_file=str(tmp_path / "missing.nk"))._seed_opts()


class _SilentConnection:
    """A connection whose requests never get a reply (what a refused publish looks like on the wire)."""

    is_closed = False
    max_payload = 1024 * 1024

    def __init__(self) -> None:
        self.subjects: List[str] = []

    async def request(self, subject: str, body: bytes, timeout: float, headers: Any = None) -> Any:
        self.subjects.append(subject)
        await asyncio.sleep(timeout)
        raise nats.errors.TimeoutError


async def _refused_after(client: Client, message: str, delay: float = 0.05) -> None:
    await asyncio.sleep(delay)
    await client._on_error(NatsError(message))


@pytest.mark.parametrize("case", ["exact", "lower-cased"])
def test_a_refused_publish_fails_forbidden_at_once_not_at_the_timeout(case: str) -> None:
    async def run() -> None:
        c = Client("nats://127.0.0.1:1", "c1")
        c._nc = nc = _SilentConnection()
        subject = "flotilla.c1.infer.MyModel"
        # nats-server's -ERR, as nats-py 2.16 passes it on (all lower case) or verbatim.
        said = f'nats: Permissions Violation for Publish to "{subject}"'
        task = asyncio.ensure_future(_refused_after(c, said.lower() if case == "lower-cased" else said))
        t0 = time.monotonic()
        with pytest.raises(ForbiddenError) as info:
            await c.infer("MyModel", {"x": np.zeros((1, 2), np.float32)}, timeout=30)
        assert time.monotonic() - t0 < 1.0
        assert info.value.code == "FORBIDDEN" and not info.value.retryable
        assert info.value.data == {"subject": subject, "operation": "publish"}
        # One attempt, nothing of it left waiting (beside it, the background describe of MyModel's signature).
        infer = [s for s in nc.subjects if ".ctl." not in s]
        assert infer == [subject] and [s for s, _ in c._pending if ".ctl." not in s] == []
        await task

    asyncio.run(run())


def test_a_refused_publish_fails_only_the_oldest_request_to_that_subject() -> None:
    async def run() -> None:
        c = Client("nats://127.0.0.1:1", "c1")
        c._nc = _SilentConnection()
        a = asyncio.ensure_future(c.describe("m", timeout=1.0))
        b = asyncio.ensure_future(c.describe("m", timeout=1.0))
        other = asyncio.ensure_future(c.list(timeout=1.0))
        await asyncio.sleep(0.02)
        await c._on_error(NatsError('nats: permissions violation for publish to "flotilla.c1.ctl.describe"'))
        with pytest.raises(ForbiddenError):
            await asyncio.wait_for(a, 0.5)
        assert not b.done() and not other.done()
        b.cancel()
        other.cancel()
        await asyncio.gather(b, other, return_exceptions=True)
        assert c._pending == []

    asyncio.run(run())


def test_a_refused_reply_inbox_fails_forbidden_and_names_inbox_prefix() -> None:
    async def run() -> None:
        c = Client("nats://127.0.0.1:1", "c1")
        c._nc = _SilentConnection()
        task = asyncio.ensure_future(_refused_after(c, 'nats: permissions violation for subscription to "_inbox.abc.*"'))
        t0 = time.monotonic()
        with pytest.raises(ForbiddenError, match="inbox_prefix"):
            await c.infer("m", {"x": np.zeros(1, np.float32)}, timeout=30)
        assert time.monotonic() - t0 < 1.0
        await task
        with pytest.raises(ForbiddenError, match="inbox_prefix"):  # and every later request on the connection
            await c.describe("m")

    asyncio.run(run())


def test_refused_credentials_are_forbidden_not_no_servers(monkeypatch: Any) -> None:
    async def refusing_connect(**opts: Any) -> Any:
        # What nats-py 2.16 does when the server answers CONNECT with -ERR 'Authorization Violation'.
        await opts["error_cb"](NatsError("nats: 'Authorization Violation'"))
        raise NoServersError

    async def unreachable(**opts: Any) -> Any:
        raise NoServersError

    async def run() -> None:
        monkeypatch.setattr(nats, "connect", refusing_connect)
        with pytest.raises(ForbiddenError, match="refused this connection \\(no credentials\\)") as info:
            await Client("nats://127.0.0.1:1", "c1").connect()
        assert info.value.data == {"operation": "connect", "credentials": "no credentials"}
        monkeypatch.setattr(nats, "connect", unreachable)
        with pytest.raises(Exception) as other:
            await Client("nats://127.0.0.1:1", "c1").connect()
        assert getattr(other.value, "code", None) == "UNAVAILABLE"  # a server that is not there stays UNAVAILABLE

    asyncio.run(run())
