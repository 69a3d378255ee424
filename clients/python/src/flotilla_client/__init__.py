"""Call models served by a Flotilla cluster from Python: numpy arrays in, numpy arrays out.

    from flotilla_client import SyncClient
    with SyncClient("nats://127.0.0.1:4222") as c:
        y = c.infer("mlp", {"x": np.zeros((1, 16), "float32")})["y"]

See clients/python/README.md and docs/protocol.md (the wire protocol this speaks).
"""
from .client import DEFAULT_TIMEOUT_S, Client, SyncClient, backoff_delay
from .errors import (
    ERRORS_BY_CODE,
    RETRYABLE_CODES,
    BadRequestError,
    ConnectionLostError,
    DeadlineExceededError,
    DecodeError,
    FlotillaError,
    ForbiddenError,
    InputMismatchError,
    InternalError,
    ModelLoadFailedError,
    NoCapacityError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    UnavailableError,
    UnknownModelError,
    VersionMismatchError,
    from_wire,
)
from .wire import DTYPES, PROTOCOL_VERSION

__version__ = "0.1.0"

__all__ = [
    "Client",
    "SyncClient",
    "DEFAULT_TIMEOUT_S",
    "DTYPES",
    "PROTOCOL_VERSION",
    "backoff_delay",
    "from_wire",
    "ERRORS_BY_CODE",
    "RETRYABLE_CODES",
    "FlotillaError",
    "UnknownModelError",
    "BadRequestError",
    "ConnectionLostError",
    "DecodeError",
    "VersionMismatchError",
    "InputMismatchError",
    "PayloadTooLargeError",
    "ModelLoadFailedError",
    "NoCapacityError",
    "OverloadedError",
    "DeadlineExceededError",
    "UnavailableError",
    "NotFoundError",
    "ForbiddenError",
    "InternalError",
]
