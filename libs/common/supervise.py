"""Supervised background loops: every long-lived loop of a service (relays, consumers, watchers,
delivery workers, upkeep, the monitor, the pool recycler) runs under one `Supervisor`.

A loop that raises anything, or returns, is logged with its name, counted in
`checkout_loop_restarts_total{service,loop}` and started again from its factory after a capped
exponential backoff with jitter (so a fleet of replicas does not reconnect in lock step). The
loops hold no state a restart loses: their positions are in PostgreSQL and JetStream.

While a loop is down (between a failure and a run that has lasted `stable_seconds`) for longer
than `grace_seconds`, `healthy()` is False, which turns the gRPC health NOT_SERVING: a service
whose relay or consumer cannot run is not ready, even if its database and NATS answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics

log = logging.getLogger("checkout.supervise")

LoopFactory = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Loop:
    """A named long-lived loop; `factory` makes a fresh run of it (a coroutine cannot be
    awaited twice, so a restart needs the function, not the coroutine)."""

    name: str
    factory: LoopFactory


_restarts = metrics.get_meter("checkout.supervise").create_counter(
    "checkout_loop_restarts",
    description="background loops restarted after an exception (or after returning)",
)


@dataclass
class LoopState:
    name: str
    restarts: int = 0
    last_error: str | None = None
    # Monotonic times: the start of the current run, and the first failure not yet outlived.
    running_since: float | None = None
    down_since: float | None = None


class LoopReturned(RuntimeError):
    """A loop that should run until cancelled came back: treated like a crash."""


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds before restart number `failures` (1-based) of a failure streak: doubling from
        `initial` up to `cap`, then scaled into [50 %, 100 %] ("equal jitter")."""
        ceiling = min(self.cap, self.initial * 2.0 ** max(0, failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Supervisor:
    def __init__(
        self,
        service: str,
        *,
        grace_seconds: float = 30.0,
        backoff: Backoff | None = None,
        stable_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.grace = grace_seconds
        self.backoff = backoff or Backoff()
        # A run that lasted this long ends the failure streak (the loop counts as up again).
        self.stable = stable_seconds if stable_seconds is not None else min(5.0, grace_seconds)
        self.clock = clock
        self.loops: dict[str, LoopState] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self._reported: set[str] = set()

    def spawn(self, name: str, factory: LoopFactory) -> asyncio.Task[None]:
        if name in self.loops:
            raise ValueError(f"a loop named {name!r} is already supervised")
        state = self.loops[name] = LoopState(name)
        task = asyncio.create_task(self._run(state, factory), name=name)
        self.tasks.append(task)
        return task

    async def _run(self, state: LoopState, factory: LoopFactory) -> None:
        streak = 0
        while True:
            started = self.clock()
            state.running_since = started
            try:
                await factory()
                raise LoopReturned(f"loop {state.name} returned")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                now = self.clock()
                if now - started >= self.stable:
                    # It had been up long enough to count as recovered: a new failure streak.
                    streak, state.down_since = 0, None
                streak += 1
                state.running_since = None
                if state.down_since is None:
                    state.down_since = now
                state.restarts += 1
                state.last_error = f"{type(error).__name__}: {error}"[:500]
                delay = self.backoff.delay(streak)
                log.error(
                    "loop %s of %s failed (%s); restart %d in %.1fs",
                    state.name,
                    self.service,
                    state.last_error,
                    state.restarts,
                    delay,
                    exc_info=not isinstance(error, LoopReturned),
                    extra={"loop": state.name, "restarts": state.restarts},
                )
                _restarts.add(1, {"service": self.service, "loop": state.name})
            await asyncio.sleep(delay)

    def _is_down(self, state: LoopState, now: float) -> bool:
        if state.down_since is None:
            return False
        if state.running_since is not None and now - state.running_since >= self.stable:
            state.down_since = None
            return False
        return True

    def down(self) -> dict[str, float]:
        """Loops down right now, with how many seconds they have been."""
        now = self.clock()
        return {
            s.name: now - s.down_since
            for s in self.loops.values()
            if self._is_down(s, now) and s.down_since is not None
        }

    def healthy(self) -> bool:
        """False while any loop has been down for longer than the grace period."""
        return all(seconds <= self.grace for seconds in self.down().values())

    async def probe(self) -> bool:
        """A gRPC health probe (libs/common/grpc_server.py); says which loops, once per change."""
        unhealthy = {name: s for name, s in self.down().items() if s > self.grace}
        if set(unhealthy) != self._reported:
            self._reported = set(unhealthy)
            if unhealthy:
                log.warning(
                    "%s not serving: loop(s) down for more than %gs: %s",
                    self.service,
                    self.grace,
                    ", ".join(f"{n} ({s:.0f}s)" for n, s in sorted(unhealthy.items())),
                )
        return not unhealthy

    async def stop(self, patience: float = 10.0) -> None:
        """Cancels every loop and waits for each to finish, cancelling it again while it does
        not; a loop still running after `patience` seconds is logged with the stack it is stuck
        at and left behind, so one wedged await cannot hang the shutdown of the service."""
        for task in self.tasks:
            task.cancel()
        deadline = self.clock() + patience
        for task in self.tasks:
            # Python 3.11's asyncio.wait_for (in the relay and inside nats-py) swallows a
            # cancellation that races with its result, and the task runs on: cancel it again.
            while not task.done() and self.clock() < deadline:
                await asyncio.wait({task}, timeout=min(2.0, max(0.0, deadline - self.clock())))
                task.cancel()
            if not task.done():
                log.error(
                    "loop %s of %s did not stop within %gs; left behind at:\n%s",
                    task.get_name(),
                    self.service,
                    patience,
                    _stack_of(task),
                )
            elif not task.cancelled() and task.exception() is not None:
                log.warning("loop %s ended with %r while stopping", task.get_name(), task.exception())
        self.tasks.clear()


def _stack_of(task: asyncio.Task[Any]) -> str:
    """Where a task is suspended, outermost first, following each coroutine to the one it awaits
    (Task.get_stack() gives only the outermost frame of a suspended coroutine)."""
    lines: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(lines) < 50:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            lines.append(f"  awaiting {awaited!r}\n")
            break
        lines.append(
            f'  File "{frame.f_code.co_filename}", line {frame.f_lineno}, in {frame.f_code.co_name}\n'
        )
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "".join(lines) or "  (no frames)"
