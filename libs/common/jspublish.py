"""Publishing to JetStream with acknowledgements in flight, for the relay: what nats-py's
`publish_async` does, without its cost per message.

`publish_async` takes a semaphore through `asyncio.wait_for`, draws a random token from the
operating system, makes a future with a done callback, and for the ack decodes the JSON into a
`PubAck` dataclass; for the relay, which publishes thousands of messages a second, that was as
much as the publish itself. Here one wildcard inbox subscription per publisher receives every
ack, each reply subject ends in a sequence number, and an ack is a dict pop: a future is made
only where the relay actually waits (the window is full, an aggregate's previous event is not
stored yet, a batch must be stored before its cursor is saved).

JetStream's guarantees are the same as with `publish_async`: every message is acknowledged by the
stream (a positive ack means stored, or a duplicate of a `Nats-Msg-Id` it already has), an error
or a "no responders" status fails the window, and nats-py resubscribes the inbox after a
reconnect (acks lost in it time out, and the relay publishes again under the same ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import Span

_NO_RESPONDERS = "503"


class AckWindow:
    """Messages sent and not yet acknowledged, by the sequence number in their reply subject."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._subscription: Subscription | None = None
        self._next = 0
        # Unacknowledged, in send order: the span each ends (sampled events only) or None.
        self._outstanding: dict[int, Span | None] = {}
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._failure: BaseException | None = None

    @property
    def in_flight(self) -> int:
        return len(self._outstanding)

    def oldest(self) -> int:
        return next(iter(self._outstanding))

    def pending(self, seq: int) -> bool:
        return seq in self._outstanding

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str], span: Span | None) -> int:
        """Sends one message; returns its number for `acked` (`span` ends with its ack)."""
        if self._failure is not None:
            raise self._failure
        if self._subscription is None:
            self._prefix = self.nc.new_inbox() + "."
            self._subscription = await self.nc.subscribe(self._prefix + "*", cb=self._ack)
        seq = self._next = self._next + 1
        self._outstanding[seq] = span
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + str(seq), headers=headers)
        except BaseException:
            self._forget(seq)
            raise
        return seq

    async def acked(self, seq: int) -> None:
        """Returns once message `seq` is acknowledged; raises what failed the window."""
        if seq in self._outstanding:
            waiter = self._waiters.get(seq)
            if waiter is None:
                waiter = self._waiters[seq] = asyncio.get_running_loop().create_future()
            await waiter
        if self._failure is not None:
            raise self._failure

    async def all_acked(self, first: int, last: int) -> None:
        """Returns once messages `first` to `last` are all acknowledged."""
        for seq in range(first, last + 1):
            if seq in self._outstanding:
                await self.acked(seq)
        if self._failure is not None:
            raise self._failure

    def reset(self) -> None:
        """Forgets every message in flight (a failed or cancelled window): late acks are ignored,
        and the next message starts a clean window."""
        for span in self._outstanding.values():
            if span is not None:
                span.end()
        self._outstanding.clear()
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.cancel()
        self._failure = None

    async def close(self) -> None:
        self.reset()
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            with contextlib.suppress(nats.errors.ConnectionClosedError):
                await subscription.unsubscribe()

    def _forget(self, seq: int) -> None:
        span = self._outstanding.pop(seq, None)
        if span is not None:
            span.end()
        waiter = self._waiters.pop(seq, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _ack(self, msg: Msg) -> None:
        try:
            seq = int(msg.subject[len(self._prefix) :])
        except ValueError:
            return
        if seq not in self._outstanding:
            return  # of a window that was reset
        failure = _failure_of(msg)
        if failure is not None and self._failure is None:
            self._failure = failure
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_result(None)  # its waiter raises the failure
        self._forget(seq)


def _failure_of(msg: Msg) -> nats.errors.Error | None:
    if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
        return nats.js.errors.NoStreamResponseError()
    if b'"error"' not in msg.data:
        return None
    try:
        body = json.loads(msg.data)
    except ValueError:
        return nats.errors.Error(f"unreadable JetStream ack: {msg.data[:200]!r}")
    error = body.get("error") if isinstance(body, dict) else None
    if error is None:
        return None  # "error" only inside some other value
    try:
        # from_error raises the error (nats-py's own publish_async callback then raised it into
        # its read loop and left the future waiting: an error ack became a timeout).
        nats.js.errors.APIError.from_error(error)
    except nats.js.errors.APIError as raised:
        return raised
    return nats.js.errors.APIError(description=str(error))
