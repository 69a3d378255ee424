"""Typed errors, one class per stable error code of docs/protocol.md ("Error codes").

On the wire an error is ``{"code", "message", "data"?}``; :func:`from_wire` rebuilds the class of
its code (an unknown code keeps its code on a plain :class:`FlotillaError`).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type

#: Codes a caller may retry as-is and expect a different outcome (as the TypeScript SDK).
RETRYABLE_CODES = frozenset({"OVERLOADED", "UNAVAILABLE", "NO_CAPACITY"})

#: Longest message kept from the wire (the protocol bounds it to 2,048 characters).
MAX_ERROR_MESSAGE_CHARS = 2048


class FlotillaError(Exception):
    """An error with a stable ``code`` (``"INPUT_MISMATCH"``, ...), its ``message`` and ``data``."""

    code: str = "INTERNAL"

    def __init__(self, message: str, *, code: Optional[str] = None, data: Any = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.data = data

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed (OVERLOADED, UNAVAILABLE, NO_CAPACITY)."""
        return self.code in RETRYABLE_CODES

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, data={self.data!r})"


class UnknownModelError(FlotillaError):
    """No deployment with that name."""

    code = "UNKNOWN_MODEL"


class BadRequestError(FlotillaError):
    """Malformed message or options (missing inputs, bad tensor, bad name, unknown output)."""

    code = "BAD_REQUEST"


class DecodeError(FlotillaError):
    """The body is not a plain msgpack map."""

    code = "DECODE_ERROR"


class VersionMismatchError(FlotillaError):
    """``v`` is not a version the node speaks (``data["supported"]``)."""

    code = "VERSION_MISMATCH"


class InputMismatchError(FlotillaError):
    """Input names, dtypes or shapes do not match the model (``data["expected"]``)."""

    code = "INPUT_MISMATCH"


class PayloadTooLargeError(FlotillaError):
    """Body above the size limit (``data["limitBytes"]``)."""

    code = "PAYLOAD_TOO_LARGE"


class ModelLoadFailedError(FlotillaError):
    """The model could not be loaded (not ONNX, unsupported op, ...)."""

    code = "MODEL_LOAD_FAILED"


class NoCapacityError(FlotillaError):
    """No device has the memory the model needs."""

    code = "NO_CAPACITY"


class OverloadedError(FlotillaError):
    """The replica's queue is full."""

    code = "OVERLOADED"


class DeadlineExceededError(FlotillaError):
    """The request's deadline passed before it ran (or before an answer came)."""

    code = "DEADLINE_EXCEEDED"


class UnavailableError(FlotillaError):
    """Nobody answers (no head, connection closed, staged body expired)."""

    code = "UNAVAILABLE"


class ConnectionLostError(UnavailableError):
    """The connection to NATS was lost while a request was in flight: its message or its reply may
    be gone with the socket (the client sends it again, within its retries)."""


class NotFoundError(FlotillaError):
    """A referenced object does not exist."""

    code = "NOT_FOUND"


class ForbiddenError(FlotillaError):
    """The NATS server refused the action to this connection's role."""

    code = "FORBIDDEN"


class InternalError(FlotillaError):
    """A bug or a runtime failure; the message says what."""

    code = "INTERNAL"


ERRORS_BY_CODE: Dict[str, Type[FlotillaError]] = {
    cls.code: cls
    for cls in (
        UnknownModelError,
        BadRequestError,
        DecodeError,
        VersionMismatchError,
        InputMismatchError,
        PayloadTooLargeError,
        ModelLoadFailedError,
        NoCapacityError,
        OverloadedError,
        DeadlineExceededError,
        UnavailableError,
        NotFoundError,
        ForbiddenError,
        InternalError,
    )
}


def from_wire(err: Any) -> FlotillaError:
    """The typed error for a wire error ``{"code", "message", "data"?}`` (lenient about its shape)."""
    if not isinstance(err, Mapping):
        return InternalError(f"malformed error in reply: {str(err)[:200]}")
    raw_code = err.get("code")
    code = raw_code[:64] if isinstance(raw_code, str) else "INTERNAL"
    message = err.get("message")
    message = message if isinstance(message, str) else str(message)
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[:MAX_ERROR_MESSAGE_CHARS] + f"… ({len(message) - MAX_ERROR_MESSAGE_CHARS} more characters)"
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return FlotillaError(message, code=code, data=err.get("data"))
    return cls(message, data=err.get("data"))


__all__ = ["FlotillaError", "RETRYABLE_CODES", "ERRORS_BY_CODE", "from_wire"] + [c.__name__ for c in ERRORS_BY_CODE.values()]
