"""What "a backing server is down" looks like, said once.

PostgreSQL, NATS and Redis each fail in their own vocabulary when a server is stopped,
restarting, refusing connections or out of connection slots. The gRPC interceptor turns these
into UNAVAILABLE (the gateway's 503 with Retry-After) instead of INTERNAL, and the projection
consumer retries them instead of counting them against an event: an outage is nobody's bad input.
"""

from __future__ import annotations

import re

import asyncpg
import grpc
import nats.errors
import nats.js.errors
import redis.exceptions

# A misused or misconfigured client raises these subclasses of asyncpg.InterfaceError: bugs,
# not outages (a closed or lost connection is the plain InterfaceError).
_ASYNCPG_CLIENT_BUGS = (
    asyncpg.DataError,
    asyncpg.ClientConfigurationError,
    asyncpg.UnsupportedClientFeatureError,
    asyncpg.UnsupportedServerFeatureError,
)

_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, no socket file, and TimeoutError (nats-py's included)
    # PostgreSQL: class 08 (connection), 53300 (too many connections), 57P01-57P03 (shutting
    # down, crashed, starting up).
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    # NATS: disconnected, reconnecting, nobody answering a JetStream API request.
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    # Redis (the cache is fail-open, but a caller that does use it directly may see these).
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def is_outage(error: BaseException) -> bool:
    """Whether `error`, or what it was raised from, says a backing server is unavailable."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 5:
        if _is_outage_itself(current):
            return True
        current = current.__cause__
        seen += 1
    return False


# asyncpg's words for a pooled connection the server dropped while it was idle (a restart sends
# it a FATAL error): the connection is still consuming that error (state 2) or terminating (4)
# when the next query comes. asyncpg has no exception class for it.
_DROPPED_CONNECTION = re.compile(r"another operation \((2|4)\) is in progress")


def _is_outage_itself(error: BaseException) -> bool:
    if isinstance(error, asyncpg.InternalClientError):
        return bool(_DROPPED_CONNECTION.search(str(error)))
    if isinstance(error, asyncpg.InterfaceError):
        return not isinstance(error, _ASYNCPG_CLIENT_BUGS)
    if isinstance(error, grpc.aio.AioRpcError):
        # Another service of ours that is down (its own outage already says UNAVAILABLE).
        return error.code() == grpc.StatusCode.UNAVAILABLE
    return isinstance(error, _OUTAGES)


def is_transient(error: BaseException) -> bool:
    """An outage, or a conflict that the same work retried later will not meet (serialization
    failure, deadlock): never a reason to give up on an event."""
    return is_outage(error) or isinstance(error, asyncpg.TransactionRollbackError)
