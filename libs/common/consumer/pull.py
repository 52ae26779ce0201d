"""The durable's messages as they arrive, from one pull request kept open on the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque

import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import StatusCode

# How long past its expiry a pull request may stay silent before it is taken for lost (a reconnect
# drops the server's side of it) and asked for again.
LOST_REQUEST_GRACE_SECONDS = 1.0


class Pull:
    """The durable's messages as they arrive. One pull request for up to `batch` messages is kept
    open on the server and asked for again as soon as it is used up or expires; `next()` returns
    whatever has arrived the moment there is one message, and asks for the next batch before the
    caller applies this one, so the server sends it meanwhile.

    nats-py's `fetch(n)` cannot do this: after a no-wait probe that finds nothing it waits for all
    n messages or its timeout, so a trickle of events sat in each fetch for its whole timeout (the
    follow-up fetch it needed was 50 ms of every event's projection lag). The request is the
    JetStream API's own (`CONSUMER.MSG.NEXT` with the reply going to our inbox); nats-py keeps the
    connection and the API prefix only on private attributes."""

    def __init__(
        self, js: JetStreamContext, stream: str, durable: str, *, batch: int, expires: float
    ) -> None:
        self._nc = js._nc
        self._subject = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = self._nc.new_inbox()
        self._request = json.dumps({"batch": batch, "expires": int(expires * 1e9)}).encode()
        self._batch, self._expires = batch, expires
        self._arrived: deque[Msg] = deque()
        self._woken = asyncio.Event()
        self._open = 0  # messages the open request may still bring; 0: none is open
        self._asked_at = 0.0
        self._failure: Msg | None = None
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._received)

    async def _received(self, msg: Msg) -> None:
        status = JetStreamContext.is_status_msg(msg)
        if status is None:
            self._arrived.append(msg)
            self._open = max(0, self._open - 1)
        elif status == StatusCode.CONTROL_MESSAGE:
            return
        else:
            # 408: the request expired; anything else (409 consumer deleted, ...) is raised by
            # next(), and the supervisor starts the consumer afresh.
            self._open = 0
            if status != StatusCode.REQUEST_TIMEOUT:
                self._failure = msg
        self._woken.set()

    async def _ask(self) -> None:
        self._open, self._asked_at = self._batch, time.monotonic()
        await self._nc.publish(self._subject, self._request, reply=self._inbox)

    def _deadline(self) -> float:
        """When the open request, silent until then, is taken for lost."""
        return self._asked_at + self._expires + LOST_REQUEST_GRACE_SECONDS

    async def next(self) -> list[Msg]:
        """The messages that have arrived, waiting up to the request's expiry for a first one
        ([] if none came)."""
        if not self._arrived:
            if not self._open or time.monotonic() > self._deadline():
                await self._ask()
            self._woken.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self._deadline() - time.monotonic())):
                    await self._woken.wait()
                    await asyncio.sleep(0)  # the rest of a burst read with the first message
        if self._failure is not None:
            nats.js.errors.APIError.from_msg(self._failure)
        messages = list(self._arrived)
        self._arrived.clear()
        if messages and not self._open:
            await self._ask()  # the next batch comes while this one is applied
        return messages

    async def stop(self) -> None:
        """Gives back what arrived and was not taken: redelivered at once, not after ack_wait."""
        if self._sub is not None:
            await self._sub.unsubscribe()
        for msg in self._arrived:
            await msg.nak()
        self._arrived.clear()
