"""What a projection is to its consumer: the protocols, the connection a `writes_only` projection
gets in a batch, and the trace context an event is applied in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from libs.common.db import Connection
from libs.common.messaging import Envelope


class Projection(Protocol):
    """A read model fed by events. `apply` runs inside the consumer's transaction.

    A projection whose `apply` only calls `conn.execute` and ignores what it returns may say so
    with a class attribute `writes_only = True`: a batch's statements are then sent in runs of the
    same SQL with `executemany` (pipelined, one round trip per run) instead of one by one.

    A batched projection (`writes_only`, `BatchProjection`) gets a span and a request context
    only for the events whose trace is sampled; the others get one for every event."""

    name: str
    event_types: Sequence[str]

    async def apply(self, conn: Connection, event: Envelope) -> None: ...


class BatchProjection(Projection, Protocol):
    """A projection that can also apply a consumer's batch at once, in a few statements for the
    whole batch instead of some per event. `apply_batch(conn, events)` must leave the read model
    as `apply` of each event in turn would (the rebuild and the one-by-one retry of a failed
    batch use `apply`); it runs in the consumer's transaction, the events in stream order and
    none of them applied before."""

    async def apply_batch(self, conn: Connection, events: Sequence[Envelope]) -> None: ...


class Writes:
    """The connection a `writes_only` projection gets in a batch: its statements are kept, in
    order, and sent when the batch is done; consecutive ones with the same SQL go together."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._runs: list[tuple[str, list[tuple[object, ...]]]] = []

    async def execute(self, query: str, *args: object) -> str:
        if self._runs and self._runs[-1][0] == query:
            self._runs[-1][1].append(args)
        else:
            self._runs.append((query, [args]))
        return ""

    async def flush(self) -> None:
        runs, self._runs = self._runs, []
        for query, rows in runs:
            if len(rows) == 1:
                await self._conn.execute(query, *rows[0])
            else:
                await self._conn.executemany(query, rows)

    def __getattr__(self, name: str) -> object:
        raise AttributeError(f"a writes_only projection may only call execute(), not {name}()")


# Run after each event's commit, before its ack. One whose work for a batch is less than for its
# events one by one may also have `after_batch(events)`, run once after a batch's commit instead.
AfterCommit = Callable[[Envelope], Awaitable[None]]


def carrier(event: Envelope, headers: Mapping[str, str] | None) -> Mapping[str, str]:
    """The trace context an event is applied in: the relay's publish span from the message's
    headers or, without them (a redelivery, a retried dead letter), the writer's from its metadata."""
    if headers and "traceparent" in headers:
        return headers
    return {k: str(v) for k, v in (event.metadata.get("trace") or {}).items()}
