"""Fresh answers shared by concurrent callers: one read serves everyone who asked before it began.

A write's consistency token is the primary's WAL position read after the write committed. Under
load, many commands finish at once and each would send its own `pg_current_wal_lsn()` (a pool
acquire and a round trip). Any read that *begins* after a caller asked is as good for that
caller as its own, so callers that arrive while a read is running wait for the next one, which
starts as soon as the running one ends and answers all of them. At most one read runs at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Fresh(Generic[T]):
    """`get()` returns what `read()` returned in a call that began after `get()` was called."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._next: asyncio.Future[T] | None = None  # joined by callers until its read begins
        self._running: asyncio.Task[None] | None = None  # referenced, so it is not collected
        self.reads = 0  # reads begun, for tests and metrics

    async def get(self) -> T:
        answer = self._next
        if answer is None:
            answer = self._next = asyncio.get_running_loop().create_future()
            if self._running is None:
                self._begin()
        # Shielded: a cancelled caller must not cancel the answer the others wait for.
        return await asyncio.shield(answer)

    def _begin(self) -> None:
        answer, self._next = self._next, None
        assert answer is not None
        self.reads += 1
        self._running = asyncio.get_running_loop().create_task(self._run(answer))

    async def _run(self, answer: asyncio.Future[T]) -> None:
        try:
            answer.set_result(await self._read())
        except asyncio.CancelledError:  # the loop is closing: so are the waiters
            answer.cancel()
            raise
        except Exception as error:  # every waiter sees the read's failure
            answer.set_exception(error)
            answer.exception()  # retrieved here too: waiters that were cancelled raise nothing
        finally:
            self._running = None
            if self._next is not None:
                self._begin()
