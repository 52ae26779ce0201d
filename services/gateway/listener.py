"""What the gateway hears on NATS to keep its memory true and its payer pages live: revoked API
keys (keycache.py), and changed invoices (views.py drops their rendered views, pages/live.py
wakes the payer pages open on them). One subscription per kind of event for the whole gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import nats
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from libs.common import events
from services.gateway.keycache import KeyCache
from services.gateway.pages.live import LiveInvoices
from services.gateway.views import ViewCache

log = logging.getLogger("checkout.gateway.listener")


class Listener:
    """Hears on NATS what makes memory stale, and drops it: the merchant service's
    `api_key.revoked` events (the record of every revocation) and the notice a gateway replica
    sends its peers the moment it has served one (which beats the event's trip through the
    outbox relay), and every invoice event (for the rendered views and the live payer pages)."""

    def __init__(
        self, cache: KeyCache, views: ViewCache, live: LiveInvoices, nats_url: str, subject_prefix: str
    ) -> None:
        self.cache = cache
        self.views = views
        self.live = live
        self.nats_url = nats_url
        self.subject = f"{subject_prefix}.*.api_key.revoked"
        # Every event of an invoice's stream (its refunds too) changes what its views show.
        self.invoice_subjects = [f"{subject_prefix}.*.{prefix}>" for prefix in events.INVOICE_EVENT_PREFIXES]
        # Outside the event stream's subjects (`<prefix>.>`): a notice between replicas, not an event.
        self.peer_subject = f"checkout-gateway.{subject_prefix}.api_key.revoked"
        self.nc: NatsClient | None = None
        self.subscribed = asyncio.Event()
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether events reach this gateway now (subscribed, and the connection is up)."""
        return self.subscribed.is_set() and self.nc is not None and self.nc.is_connected

    async def run(self) -> None:
        delay = 0.5
        while self.nc is None:
            try:
                self.nc = await nats.connect(
                    self.nats_url,
                    name="checkout-gateway",
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
            except (OSError, TimeoutError, nats.errors.Error) as error:
                log.warning(
                    "NATS unreachable (%s); cached keys and views live for their TTL meanwhile", error
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await self.nc.subscribe(self.subject, cb=self._on_revoked)
        await self.nc.subscribe(self.peer_subject, cb=self._on_peer_notice)
        for subject in self.invoice_subjects:
            await self.nc.subscribe(subject, cb=self._on_invoice_event)
        await self.nc.flush()
        self.subscribed.set()

    async def tell_peers(self, key_id: uuid.UUID) -> None:
        """Tells every other replica, before this one answers the revoke; without NATS the
        merchant service's event (or the cache's TTL) still gets there."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            return
        try:
            await nc.publish(self.peer_subject, key_id.bytes)
            await nc.flush(timeout=1)
        except (nats.errors.Error, TimeoutError, OSError) as error:
            log.warning("could not tell the other gateways of a revoked key: %s", error)

    async def _on_peer_notice(self, msg: Msg) -> None:
        try:
            self.cache.revoked(uuid.UUID(bytes=msg.data))
        except ValueError:
            log.warning("unreadable revocation notice on %s", msg.subject)

    async def _on_revoked(self, msg: Msg) -> None:
        try:
            key_id = uuid.UUID(orjson.loads(msg.data)["data"]["api_key_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable api_key.revoked event on %s", msg.subject)
            return
        self.cache.revoked(key_id)

    async def _on_invoice_event(self, msg: Msg) -> None:
        try:
            invoice_id = uuid.UUID(orjson.loads(msg.data)["aggregate_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable invoice event on %s", msg.subject)
            return
        # In one callback: a woken page runs after both, so its re-read never meets the stale view.
        self.views.changed(invoice_id)
        self.live.changed(invoice_id)

    async def _disconnected(self) -> None:
        if self._closing:
            return
        log.warning("NATS connection lost; cached API keys will be dropped on reconnect")

    async def _reconnected(self) -> None:
        # A revocation or an invoice change may have gone by while we were away.
        self.cache.clear("reconnected")
        self.views.clear()
        self.live.wake_all()

    async def close(self) -> None:
        self._closing = True
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.close()
