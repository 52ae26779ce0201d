"""Rendered invoice views in this process's memory: the merchant's `GET /v1/invoices/{id}` and
the payer's `GET /v1/checkout/{id}`, the two reads every client polls, and the checkout view
behind the payer's hosted page and its live status (kept as the service's message).

An entry is the response body, rendered once. It is dropped the moment the gateway hears any of
the invoice's events on NATS (listener.py), which the invoice service publishes after the commit
that changed it; a reconnect drops everything (an event may have been missed), and the hot TTL
(CHECKOUT_CACHE_HOT_TTL) is the safety net. A read that raced an event is not stored: each
invoice has a generation that events bump, and a body fetched under an older one is discarded.

With read replicas a body may come from a replica up to its role's tolerance behind the primary,
so a read that began soon after an event could still be older than the change it announced. The
service says how far behind its answer may be (libs/common/replicas.py); a body is kept only if
it began at least that long after the invoice's last event, and it remembers its WAL position so
a read carrying a consistency token never gets an older one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

LOOKUPS = Counter(
    "gateway_view_cache_lookups_total", "Invoice view reads, by where they were answered.", ["kind", "result"]
)
MAX_ENTRIES = 100_000
# invoice: GET /v1/invoices/{id}'s body; checkout: GET /v1/checkout/{id}'s body; payer: the
# CheckoutView message the hosted page (pages/pay.py) renders.
KINDS = ("invoice", "checkout", "payer")
_counters: dict[tuple[str, str], Any] = {}


def _counter(kind: str, result: str) -> Any:
    # Label children looked up once, not per request.
    child = _counters.get((kind, result))
    if child is None:
        child = _counters[(kind, result)] = LOOKUPS.labels(kind, result)
    return child


@dataclass(frozen=True)
class View:
    body: bytes
    owner: str  # the merchant whose invoice it is: another merchant's key must miss
    until: float
    position: int | None = None  # the WAL position its data is at least as new as (None: unknown)


@dataclass
class ViewCache:
    ttl_seconds: float
    clock: Callable[[], float] = time.monotonic
    _views: dict[tuple[str, uuid.UUID], View] = field(default_factory=dict)
    _generations: dict[uuid.UUID, int] = field(default_factory=dict)
    _changed_at: dict[uuid.UUID, float] = field(default_factory=dict)

    def get(self, kind: str, invoice_id: uuid.UUID, required: int | None = None) -> View | None:
        """The view, unless `required` (a consistency token's position) is newer than it."""
        view = self._views.get((kind, invoice_id))
        if view is not None and required is not None and (view.position is None or view.position < required):
            _counter(kind, "miss").inc()
            return None
        if view is not None and view.until > self.clock():
            _counter(kind, "memory").inc()
            return view
        if view is not None:
            del self._views[(kind, invoice_id)]
        _counter(kind, "miss").inc()
        return None

    def generation(self, invoice_id: uuid.UUID) -> int:
        """Read before fetching; pass to `put` so a fetch that raced an event is not kept."""
        return self._generations.get(invoice_id, 0)

    def now(self) -> float:
        return self.clock()

    def put(
        self,
        kind: str,
        invoice_id: uuid.UUID,
        generation: int,
        body: bytes,
        owner: str,
        *,
        began: float | None = None,
        staleness: float = 0.0,
        position: int | None = None,
    ) -> None:
        """Keeps a body fetched under `generation`; one whose read `began` (this cache's clock)
        may be `staleness` seconds behind the primary only if that still covers the last event."""
        if self._generations.get(invoice_id, 0) != generation:
            return
        if staleness and (
            began is None or began - staleness < self._changed_at.get(invoice_id, float("-inf"))
        ):
            return
        if len(self._views) >= MAX_ENTRIES:
            del self._views[next(iter(self._views))]
        self._views[(kind, invoice_id)] = View(body, owner, self.clock() + self.ttl_seconds, position)

    def changed(self, invoice_id: uuid.UUID) -> None:
        self._generations[invoice_id] = self._generations.get(invoice_id, 0) + 1
        self._changed_at[invoice_id] = self.clock()
        if len(self._generations) > MAX_ENTRIES:
            forgotten = next(iter(self._generations))
            del self._generations[forgotten]
            self._changed_at.pop(forgotten, None)
        for kind in KINDS:
            self._views.pop((kind, invoice_id), None)

    def clear(self) -> None:
        for invoice_id in {i for _, i in self._views}:
            self.changed(invoice_id)
