"""Which open payer pages an invoice event concerns: one core-NATS subscription per gateway.

The relay publishes every event on `<prefix>.s<shard>.<type>`; a core subscription to
`<prefix>.*.invoice.>` sees the invoice events of every shard as they are stored in JetStream,
with no durable consumer to keep. A message only says "look again": the stream re-reads the
checkout view from the invoice service, which has committed the change before the relay
published it, so the page never shows anything the service would not.

Missing a message (NATS down, a reconnect) is not fatal: a stream re-reads on its heartbeat
while the subscription is not connected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

log = logging.getLogger("checkout.gateway.pages")

CONNECT_TIMEOUT_SECONDS = 2.0
# After a failed connect, streams wait this long before the next try (they re-read meanwhile).
RETRY_SECONDS = 5.0


@dataclass
class Watch:
    invoice_id: str
    changed: asyncio.Event
    _watchers: dict[str, set[asyncio.Event]]

    def close(self) -> None:
        watchers = self._watchers.get(self.invoice_id)
        if watchers is not None:
            watchers.discard(self.changed)
            if not watchers:
                del self._watchers[self.invoice_id]


class LiveInvoices:
    def __init__(self, nats_url: str, subject_prefix: str) -> None:
        self.nats_url = nats_url
        self.subject = f"{subject_prefix}.*.invoice.>"
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._nc: NatsClient | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self.ending = False

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        """Subscribes on first use (most gateways serve no payer page for a while)."""
        if self._nc is not None or time.monotonic() < self._retry_at:
            return
        async with self._lock:
            if self._nc is not None:
                return
            try:
                nc = await asyncio.wait_for(
                    nats.connect(
                        self.nats_url,
                        name="checkout-gateway-pages",
                        connect_timeout=CONNECT_TIMEOUT_SECONDS,
                        allow_reconnect=True,
                        max_reconnect_attempts=-1,
                    ),
                    timeout=CONNECT_TIMEOUT_SECONDS * 2,
                )
                await nc.subscribe(self.subject, cb=self._on_message)
            except Exception as error:  # any failure to reach NATS: streams fall back to re-reads
                self._retry_at = time.monotonic() + RETRY_SECONDS
                log.warning(
                    "live page updates: NATS at %s unreachable (%s); re-reading instead", self.nats_url, error
                )
                return
            self._nc = nc

    async def _on_message(self, msg: Msg) -> None:
        try:
            invoice_id = str(json.loads(msg.data)["aggregate_id"])
        except (ValueError, KeyError, TypeError):
            return  # not an envelope this code can read; the heartbeat re-read covers it
        for changed in self._watchers.get(invoice_id, ()):
            changed.set()

    def watch(self, invoice_id: str) -> Watch:
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
        for watchers in self._watchers.values():
            for changed in watchers:
                changed.set()

    async def close(self) -> None:
        self.end_all()
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await nc.close()
            except Exception as error:  # closing a broken connection: nothing left to do
                log.debug("closing the pages' NATS connection: %s", error)
