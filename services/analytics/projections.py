"""Read models the analytics service projects from other services' events (via NATS)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from checkout.invoice.v1 import events_pb2 as invoice_events
from checkout.merchant.v1 import events_pb2 as merchant_events

from libs.common.consumer import AfterCommit, Projection
from libs.common.db import Connection
from libs.common.events import PAID_STATUSES, STATUS_EVENTS
from libs.common.messaging import Envelope
from libs.common.protoconv import datetime_of
from libs.common.service import Runtime
from services.analytics import repository

# Events that change a merchant's metrics, and so retire its cached analytics.
METRIC_EVENTS = frozenset({"invoice.created", *STATUS_EVENTS})
_CURRENCY = re.compile(r"[A-Z]{3}")


def amount_of(raw: str, field: str) -> Decimal:
    """A decimal string from an event; a malformed one is a ValueError, which the consumer
    retries rather than counting it wrong."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{field} {raw!r} is not a decimal") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{field} {raw!r} is not a non-negative amount")
    return value


def currency_of(raw: str) -> str:
    """The ISO 4217 code an event's fiat amounts are in; like a malformed amount, a missing one
    is a ValueError (retried), never money counted in a guessed currency."""
    if not _CURRENCY.fullmatch(raw):
        raise ValueError(f"currency {raw!r} is not an ISO 4217 code")
    return raw


class DailyMetricsProjection:
    """`daily_metrics` per (merchant, UTC day, fiat currency): amounts in different currencies
    are never added together, each invoice counts in its own.

    invoices_created / amount_created count an invoice on the day it was created;
    invoices_paid / amount_paid (its fiat total) on the day it was first paid (the `at` of its
    first invoice.paid), once: `paid_invoices` remembers it, a reorg that takes the invoice out
    of paid (reopened, invalid, partial) un-counts it and a later paid re-counts it on that same
    first day; invoice.confirmed changes nothing. conversion_rate is the day's invoices_paid /
    invoices_created x 100, to 2 decimals (0 on a day nothing was created).
    """

    name = "daily-metrics"
    event_types: Sequence[str] = ("invoice.created", *STATUS_EVENTS)
    reset_sql = repository.RESET_DAILY_METRICS  # for `libs.common.consumer.rebuild`

    async def apply(self, conn: Connection, event: Envelope) -> None:
        await self.apply_batch(conn, [event])

    async def apply_batch(self, conn: Connection, events: Sequence[Envelope]) -> None:
        """The status events one by one, in order (each reads its invoice's paid_invoices row),
        and the batch's invoice.created summed per (merchant, day, currency) into one upsert:
        every change to daily_metrics adds to its sums and recomputes the rate from them, so the
        order of the additions does not change the rows."""
        created: list[tuple[uuid.UUID, dt.date, str, Decimal]] = []
        for event in events:
            message = event.message()
            if isinstance(message, invoice_events.StatusChange):
                await self._status(conn, event, message)
            elif isinstance(message, invoice_events.InvoiceCreated):
                at = datetime_of(message.created_at) if message.HasField("created_at") else event.occurred_at
                day = at.astimezone(dt.UTC).date()
                total = amount_of(message.total, "total")
                created.append((uuid.UUID(message.merchant_id), day, currency_of(message.currency), total))
        if created:
            for day in sorted({day for _, day, _, _ in created}):
                await repository.ensure_partition(conn, day)
            await repository.count_created_many(conn, created)

    async def _status(self, conn: Connection, event: Envelope, message: invoice_events.StatusChange) -> None:
        counts = STATUS_EVENTS[event.type] in PAID_STATUSES
        invoice_id = uuid.UUID(message.invoice_id) if message.invoice_id else event.aggregate_id
        known = await repository.paid_invoice(conn, invoice_id)
        if known is None:
            if not counts:
                return  # never paid: nothing to count or take back
            at = datetime_of(message.at) if message.HasField("at") else event.occurred_at
            day = at.astimezone(dt.UTC).date()
            merchant_id = uuid.UUID(message.merchant_id)
            total = amount_of(message.total, "total")
            currency = currency_of(message.currency)
            await repository.ensure_partition(conn, day)
            await repository.add_paid_invoice(
                conn, invoice_id, merchant_id, day, currency, total, event.version
            )
            await repository.count_paid(conn, merchant_id, day, currency, total, 1)
            return
        if event.version <= known["invoice_version"]:
            return  # an older status replayed after a newer one
        if counts != known["counted"]:
            await repository.ensure_partition(conn, known["paid_on"])
            await repository.count_paid(
                conn,
                known["merchant_id"],
                known["paid_on"],
                known["currency"],
                known["amount"],
                1 if counts else -1,
            )
        await repository.mark_paid_invoice(conn, invoice_id, counts, event.version)


class MerchantsProjection:
    """`merchant_directory`: the merchants living on this shard."""

    name = "merchants"
    writes_only = True  # a batch's inserts go to PostgreSQL pipelined (libs/common/consumer/projection.py)
    event_types: Sequence[str] = ("merchant.created",)
    reset_sql = repository.RESET_MERCHANT_DIRECTORY

    async def apply(self, conn: Connection, event: Envelope) -> None:
        message = event.message()
        if not isinstance(message, merchant_events.MerchantCreated):
            return
        merchant_id = uuid.UUID(message.merchant_id) if message.merchant_id else event.aggregate_id
        created_at = datetime_of(message.created_at) if message.HasField("created_at") else event.occurred_at
        await repository.add_merchant(conn, merchant_id, created_at)


def projections(runtime: Runtime) -> Sequence[Projection]:
    return [DailyMetricsProjection(), MerchantsProjection()]


class _Invalidation:
    """After a commit that changed merchants' metrics, bump each one's analytics generation: the
    gateway's cached ranges of that merchant embed it, so one write retires them all. A batch
    bumps each of its merchants once, all in one Redis round trip (a call each was most of this
    consumer's time)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, event: Envelope) -> None:
        await self.after_batch([event])

    async def after_batch(self, events: Sequence[Envelope]) -> None:
        merchants = {
            str(event.data["merchant_id"])
            for event in events
            if event.type in METRIC_EVENTS and event.data.get("merchant_id")
        }
        fences = {m: await self.runtime.fence_position(uuid.UUID(m)) for m in sorted(merchants)}
        await self.runtime.cache.bump_many("analytics", fences)


def invalidate_cache(runtime: Runtime) -> AfterCommit:
    return _Invalidation(runtime)
