"""The Prometheus families every service exports, declared once (seed: "Key Metrics to Monitor";
deploy/monitoring's alerts and dashboard name only families declared here or in
services/gateway).

Events are counted or timed where they happen (RPCs, queries, cache reads, webhook attempts,
restarts). Levels that need I/O (pool use, partition sizes, lags, pending messages) are sampled
by a background loop (libs/common/monitor.py) or kept by their owner (replica lag), and read at
scrape time by one collector from every live `Source`: a second runtime in one process (tests
run several) reports beside the first instead of replacing it."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Seconds; the seed's query-time threshold (100 ms) is a bucket edge, so alerts can count the
# queries above it as well as average them.
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RPC_DURATION = Histogram(
    "checkout_grpc_server_handling_seconds",
    "Time a service spent answering a gRPC call, by method and status code.",
    ["service", "method", "code"],
    buckets=_FAST_BUCKETS,
)
QUERY_DURATION = Histogram(
    "checkout_db_query_duration_seconds",
    "Time of one SQL statement on a shard, by its kind (select, insert, update, ...).",
    ["service", "shard", "kind"],
    buckets=_FAST_BUCKETS,
)
PROJECTION_LAG = Histogram(
    "checkout_projection_lag_seconds",
    "From an event's commit in its service to its commit in a projection's read model, per"
    " durable consumer (the seed's read-your-writes lag for another service's read model).",
    ["service", "consumer"],
    buckets=_FAST_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "checkout_cache_lookups_total",
    "Redis cache reads, by key family and result: hit, miss, stale (older than the reader's own write),"
    " bypassed (Redis down or failing).",
    ["family", "result"],
)
WEBHOOK_ATTEMPTS = Counter(
    "checkout_webhook_attempts_total",
    "Webhook delivery attempts, by outcome (succeeded, retrying, failed: no retry left).",
    ["outcome"],
)
DEAD_LETTERS_PARKED = Counter(
    "checkout_dead_letters_parked_total",
    "Events a projection consumer parked after failing to apply them.",
    ["service", "projection"],
)
LOOP_RESTARTS = Counter(
    "checkout_loop_restarts_total",
    "Background loops restarted after an exception (or after returning).",
    ["service", "loop"],
)
REPLICA_READS = Counter(
    "checkout_replica_reads_total",
    "Reads by role, and what served them: replica or primary (and why).",
    ["service", "shard", "role", "served_by", "reason"],
)


WATCHER_HEAD_LAG = Gauge(
    "checkout_watcher_head_lag_blocks",
    "Blocks between a network's tip and the last block its watcher has scanned, after its last poll.",
    ["network"],
)


@dataclass(frozen=True)
class Level:
    """A level read at scrape time from the live sources."""

    name: str
    help: str
    labels: tuple[str, ...]


GAUGES = {
    g.name: g
    for g in (
        Level(
            "checkout_db_pool_connections",
            "Connections of a shard pool, by state: open, in_use, idle, max (the pool's size limit).",
            ("service", "shard", "state"),
        ),
        Level(
            "checkout_partition_rows",
            "Estimated rows of one events partition (planner statistics).",
            ("service", "shard", "partition"),
        ),
        Level(
            "checkout_partition_bytes",
            "Bytes of one events partition, indexes and TOAST included.",
            ("service", "shard", "partition"),
        ),
        Level(
            "checkout_archive_partition_bytes",
            "Bytes of one archived partition.",
            ("service", "shard", "partition"),
        ),
        Level(
            "checkout_shard_rows",
            "Estimated events stored on a shard (all its partitions).",
            ("service", "shard"),
        ),
        Level(
            "checkout_shard_bytes",
            "Bytes on disk of the service's schema on a shard (tables and indexes).",
            ("service", "shard"),
        ),
        Level(
            "checkout_shard_balance_ratio",
            "(largest - smallest) / largest of checkout_shard_rows over the shards this process"
            " serves; 0 when balanced.",
            ("service",),
        ),
        Level(
            "checkout_relay_lag_events",
            "Committed events not yet published to JetStream.",
            ("service", "shard"),
        ),
        Level(
            "checkout_relay_lag_seconds",
            "Age of the oldest committed event not yet published to JetStream (0: none waits).",
            ("service", "shard"),
        ),
        Level(
            "checkout_projection_pending_messages",
            "Messages a projection consumer has not acked (not yet delivered plus in flight).",
            ("service", "consumer"),
        ),
        Level(
            "checkout_dead_letters",
            "Events parked in a shard's dead-letter table, waiting for an operator.",
            ("service", "shard"),
        ),
        Level(
            "checkout_replica_lag_seconds",
            "How stale a read from a replica may be.",
            ("service", "shard", "replica"),
        ),
        Level(
            "checkout_replica_lag_bytes",
            "WAL a replica has not replayed yet.",
            ("service", "shard", "replica"),
        ),
    )
}

Sample = tuple[str, dict[str, str], float]


class Source(Protocol):
    def samples(self) -> Iterable[Sample]: ...


_sources: weakref.WeakSet[Any] = weakref.WeakSet()


def register(source: Source) -> None:
    """Reads `source` at every scrape until it is garbage or `unregister`ed."""
    _sources.add(source)


def unregister(source: Source) -> None:
    _sources.discard(source)


class _Levels(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {name: GaugeMetricFamily(name, g.help, labels=g.labels) for name, g in GAUGES.items()}
        for source in list(_sources):
            try:
                samples = list(source.samples())
            except Exception:  # a broken source must not fail the scrape of everything else
                continue
            for name, labels, value in samples:
                gauge = GAUGES[name]
                families[name].add_metric([str(labels[label]) for label in gauge.labels], value)
        yield from families.values()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # families are known only at collection; no duplicate check needed


REGISTRY.register(_Levels())


def statement_kind(query: str) -> str:
    """select, insert, update, delete, with, ... (the first keyword), never the statement."""
    words = query.lstrip(" \t\n(").split(None, 1)
    kind = words[0].lower() if words else ""
    return kind if kind in _KINDS else "other"


_KINDS = frozenset(
    ("select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "set", "reset",
     "listen", "unlisten", "notify", "lock", "create", "alter", "drop", "copy", "savepoint",
     "release", "show", "truncate", "analyze", "vacuum")
)  # fmt: skip


def query_logger(service: str, shard: int) -> Callable[[Any], None]:
    """An asyncpg query logger (`Connection.add_query_logger`) timing statements by kind."""
    children: dict[str, Any] = {}
    shard_label = str(shard)

    def observe(record: Any) -> None:
        kind = statement_kind(record.query)
        child = children.get(kind)
        if child is None:
            child = children[kind] = QUERY_DURATION.labels(service, shard_label, kind)
        child.observe(record.elapsed)

    return observe


def balance_ratio(rows: Iterable[float]) -> float:
    """(largest - smallest) / largest: the seed's "shard size difference" (alert above 0.3). The
    balance planner's target is libs/common/balance.py's distance from the mean."""
    values = list(rows)
    if len(values) < 2 or max(values) <= 0:
        return 0.0
    return (max(values) - min(values)) / max(values)
