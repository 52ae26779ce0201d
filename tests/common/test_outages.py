"""What counts as a backing server being down (503, retried, never held against an event) and
what is a bug (500, counted towards parking)."""

from __future__ import annotations

import asyncpg
import grpc
import nats.errors
import nats.js.errors
import pytest
import redis.exceptions
from grpc.aio import AioRpcError, Metadata

from libs.common.outages import is_outage, is_transient


def rpc_error(code: grpc.StatusCode) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(), "x", None)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        FileNotFoundError(2, "no socket file: the server is not running"),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress"),
        nats.errors.ConnectionClosedError(),
        nats.errors.NoRespondersError(),
        nats.errors.TimeoutError(),
        nats.js.errors.ServiceUnavailableError(),
        redis.exceptions.ConnectionError("Error 111 connecting"),
        rpc_error(grpc.StatusCode.UNAVAILABLE),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_server_that_is_down_or_restarting_is_an_outage(error: Exception) -> None:
    assert is_outage(error) and is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        KeyError("settings"),
        ValueError("bad"),
        asyncpg.NumericValueOutOfRangeError("numeric field overflow"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.DataError("invalid input for query argument $1"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (12) is in progress"),
        rpc_error(grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_bug_or_bad_data_is_not_an_outage(error: Exception) -> None:
    assert not is_outage(error)


def test_an_error_raised_from_an_outage_is_one_too() -> None:
    try:
        try:
            raise asyncpg.ConnectionDoesNotExistError("gone")
        except asyncpg.PostgresError as cause:
            raise RuntimeError("could not load the invoice") from cause
    except RuntimeError as error:
        assert is_outage(error)


def test_a_serialization_conflict_is_transient_but_no_outage() -> None:
    error = asyncpg.SerializationError("could not serialize access")
    assert is_transient(error) and not is_outage(error)
