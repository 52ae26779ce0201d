"""A service's declaration (`ServiceSpec`) and its composition root (`ServiceSpec.build`).

`build(runtime)` is the one place a service's objects are made: each once, handed by constructor
to whatever needs it (the servicer, a projection, an after-commit hook, a loop), and returned as
a `Built` that says what the runtime runs and how to stop it. The runtime calls it once when it
starts (after the shards are migrated and NATS is connected) and, when it stops, runs the close
hooks newest first, after every loop has stopped and before the pools close. A service whose
tests or tools need one of its objects declares a `Built` subclass naming it and reads it with
`TheBuilt.of(runtime)`: the runtime's own composition, never a second copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import grpc

from libs.common.consumer import AfterCommit, Projection
from libs.common.partitions import PartitionedTable
from libs.common.supervise import Loop

if TYPE_CHECKING:
    from libs.common.service import Runtime

Close = Callable[[], Awaitable[None]]


def _no_shard_loops(shard: int) -> Sequence[Loop]:
    return ()


@dataclass(frozen=True, kw_only=True)
class Built:
    """What a service runs, as its spec's `build` made it for one runtime."""

    # Adds the servicers to the server; returns their full names for health and reflection.
    register: Callable[[grpc.aio.Server], Sequence[str]]
    projections: Sequence[Projection] = ()
    after_commit: AfterCommit | None = None
    # The service's own long-lived loops (watchers, jobs, workers), each run supervised.
    background: Sequence[Loop] = ()
    # Its loops of one shard (senders, retention), started with the shard, also one added later.
    shard_loops: Callable[[int], Sequence[Loop]] = _no_shard_loops
    # Releases what the objects hold (clients, channels); run in reverse order on stop.
    close: Sequence[Close] = ()

    @classmethod
    def of(cls, runtime: Runtime) -> Self:
        """The runtime's composition, as the service's own kind of `Built`."""
        built = runtime.built
        if not isinstance(built, cls):
            raise TypeError(f"{runtime.spec.name} built a {type(built).__name__}, not a {cls.__name__}")
        return built


@dataclass
class ServiceSpec:
    name: str  # also the Postgres schema and the NATS durable prefix
    service_dir: Path
    # The composition root: everything the service runs, made for one runtime.
    build: Callable[[Runtime], Built]
    partitioned: Sequence[PartitionedTable] = ()
    # Partitioned tables whose old partitions move to the archive schema (CHECKOUT_ARCHIVE_*).
    archived: Sequence[PartitionedTable] = ()
    # Whether its reads go to replicas (CHECKOUT_SHARD_REPLICAS); one that reads only the primary
    # (the merchant service: a revoked key must stop at once) does not probe them either.
    replica_reads: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
