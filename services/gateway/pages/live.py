"""Which open payer pages an invoice event concerns.

The gateway hears every invoice event once, on the listener's one NATS subscription
(listener.py), which first drops the invoice's rendered views and then calls `changed` here. A
wake-up only says "look again": the stream re-reads the checkout view, which the invoice service
committed before the relay published the event, so a page never shows what the service would
not.

Missing an event (NATS down, a reconnect) is not fatal: a reconnect wakes every open page (an
event may have gone by meanwhile), and while NATS is away a stream re-reads on its heartbeat.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass


@dataclass
class Watch:
    invoice_id: uuid.UUID
    changed: asyncio.Event
    _watchers: dict[uuid.UUID, set[asyncio.Event]]

    def close(self) -> None:
        watchers = self._watchers.get(self.invoice_id)
        if watchers is not None:
            watchers.discard(self.changed)
            if not watchers:
                del self._watchers[self.invoice_id]


class LiveInvoices:
    def __init__(self) -> None:
        self._watchers: dict[uuid.UUID, set[asyncio.Event]] = {}
        self.ending = False

    def changed(self, invoice_id: uuid.UUID) -> None:
        for changed in self._watchers.get(invoice_id, ()):
            changed.set()

    def wake_all(self) -> None:
        """Every open page looks again: events may have been missed."""
        for watchers in self._watchers.values():
            for changed in watchers:
                changed.set()

    def watch(self, invoice_id: uuid.UUID) -> Watch:
        """An event set whenever something happens to the invoice (or the gateway stops)."""
        watch = Watch(invoice_id, asyncio.Event(), self._watchers)
        self._watchers.setdefault(invoice_id, set()).add(watch.changed)
        if self.ending:
            watch.changed.set()
        return watch

    @property
    def watched(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def end_all(self) -> None:
        """Lets every open stream finish: the server is shutting down and waits for them."""
        self.ending = True
        self.wake_all()
