"""Waking a shard's relay after its writers' transactions end, without NOTIFY inside them.

Why not `pg_notify` in the appending transaction: PostgreSQL takes a cluster-wide exclusive lock
in the commit of every transaction that queued a notification and holds it until the commit is
durable, so notifying writers commit one by one instead of sharing a WAL flush. Instead an append
asks its pooled connection (`PooledConnection.after_release`) to call `committed(pool, channel)`
when it returns to the pool, which is after its transaction ended (committed, or rolled back: a
spurious wake costs the relay one empty pass).

`committed` wakes the relay in this process that serves that pool and channel at once. When no
relay here serves it (another replica holds the relay's lock), it sends one NOTIFY on a pooled
connection, with at most one in flight per pool and channel: a burst of commits costs one or two
notifications, not one each (and no more than one per NOTIFY_INTERVAL_SECONDS). The relay's
poll interval remains the fallback for a lost wake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger("checkout.wakeups")

Wake = Callable[[], None]
# Under a steady stream of commits a relay in another process is woken this often at most; it
# reads everything committed meanwhile in one pass anyway.
NOTIFY_INTERVAL_SECONDS = 0.002

# Keyed by id(pool): asyncpg pools cannot be weakly referenced. A relay unregisters when it stops;
# a notifier keeps its pool and is dropped once that pool is closed.
_relays: dict[tuple[int, str], set[Wake]] = {}
_notifiers: dict[tuple[int, str], _Notifier] = {}


def serve(pool: asyncpg.Pool, channel: str, wake: Wake) -> None:
    """Registers a running relay: commits on `pool` for `channel` call `wake` directly."""
    _relays.setdefault((id(pool), channel), set()).add(wake)


def unserve(pool: asyncpg.Pool, channel: str, wake: Wake) -> None:
    key = (id(pool), channel)
    wakes = _relays.get(key, set())
    wakes.discard(wake)
    if not wakes:
        _relays.pop(key, None)


def committed(pool: asyncpg.Pool, channel: str) -> None:
    """A transaction on `pool` that appended events for `channel` has ended."""
    key = (id(pool), channel)
    local = _relays.get(key)
    if local:
        for wake in list(local):
            wake()
        return
    notifier = _notifiers.get(key)
    if notifier is None or notifier.pool is not pool:
        for stale in [k for k, n in _notifiers.items() if n.pool.is_closing()]:
            del _notifiers[stale]
        notifier = _notifiers[key] = _Notifier(pool, channel)
    notifier.poke()


class _Notifier:
    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self.pool = pool
        self._channel = channel
        self._again = False
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True  # the notification in flight may precede this commit: one more
            return
        self._task = asyncio.get_running_loop().create_task(self._send(), name=f"notify-{self._channel}")

    async def _send(self) -> None:
        while True:
            self._again = False
            if self.pool.is_closing():
                return
            try:
                await self.pool.execute("SELECT pg_notify($1, '')", self._channel)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.debug(
                    "NOTIFY %s failed (the relay's poll will find the events): %s", self._channel, error
                )
                return
            if not self._again:
                return
            await asyncio.sleep(NOTIFY_INTERVAL_SECONDS)
