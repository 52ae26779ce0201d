"""Python's cyclic garbage collector tuned for a server that fetches rows.

A bulk read (the watcher's minute read of ~4,000 open invoices on a 1M-invoice shard) allocates
tens of thousands of tuples and records; with CPython's default thresholds (700, 10, 10) that
starts a gen-0 collection every 700 allocations and, every hundred of those, a full collection
that walks every object the process holds. Measured on that read (`tools/bench_scale.py`'s shard,
100 fetches): p50 8 ms and p95 22-35 ms with the defaults, p95 11 ms with these settings; the
tail was the collector, not PostgreSQL (its execution time is 5 ms either way).

So: what exists once start-up is done (modules, config, pools, compiled protobufs) is frozen out
of the collector's walks (`gc.freeze`), and collections start after GEN0_THRESHOLD allocations.
Reference counting still frees almost everything at once; only cycles wait a little longer."""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 20_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 10


def tune() -> None:
    """Called once a process has started (its long-lived objects exist): freezes them and sets
    the thresholds. Idempotent enough to call again; each call freezes what exists by then."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
