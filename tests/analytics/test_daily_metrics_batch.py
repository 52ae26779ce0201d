"""The daily-metrics projection applied a consumer's batch at once (the batch's invoice.created
summed into one upsert) leaves the same rows as its events applied one at a time, as a rebuild
applies them: counts, exact amounts and rates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from checkout.invoice.v1 import events_pb2 as invoice_events

from libs.common.config import Config
from libs.common.messaging import Envelope
from services.analytics.projections import DailyMetricsProjection
from services.analytics.service import SPEC
from tests.common.eventsource import invoice_created, merchant_on_shard
from tests.merchant.test_invoice_events_batch import envelope, paid, state_after
from tests.services import running

STATE = {
    "daily_metrics": "SELECT * FROM daily_metrics ORDER BY merchant_id, metric_date, currency",
    "paid_invoices": "SELECT * FROM paid_invoices ORDER BY invoice_id",
}


async def test_a_batch_applied_at_once_equals_its_events_applied_one_by_one(config: Config) -> None:
    async with running(SPEC, config) as (runtime, _):
        merchant, _ = merchant_on_shard(config, 0, "batch")
        projection = DailyMetricsProjection()
        today = dt.datetime.now(dt.UTC)
        batch = []
        # Sums past a float's and Python's default Decimal's 28 digits: PostgreSQL's NUMERIC is exact.
        for total, currency, day in [("9999999999.123456789012345678901", "USD", today), ("0.000000000000000000001", "USD", today),
                                     ("10.00", "EUR", today), ("3.50", "USD", today + dt.timedelta(days=1))]:  # fmt: skip
            invoice_id, created = invoice_created(merchant, total=total, at=day, currency=currency)
            batch.append(envelope(invoice_id, 1, created, day))
        first = batch[0].aggregate_id
        batch.insert(1, envelope(first, 2, paid(first, merchant), today))
        reopened = invoice_events.StatusChange(
            invoice_id=str(first),
            merchant_id=str(merchant),
            status="pending",
            total="0.123456785",
            currency="USD",
        )
        batch.append(envelope(first, 3, reopened, today))
        batch.append(envelope(first, 4, paid(first, merchant), today))

        async def one_by_one(conn: Any, events: Sequence[Envelope]) -> None:
            for event in events:
                await projection.apply(conn, event)

        pool = runtime.pool_for(merchant)
        expected = await state_after(pool, one_by_one, batch, STATE)
        usd_today = next(
            r for r in expected["daily_metrics"] if r["currency"] == "USD" and r["invoices_paid"]
        )
        assert (usd_today["invoices_created"], str(usd_today["amount_created"])) == (
            2,
            "9999999999.123456789012345678902",
        )
        assert await state_after(pool, projection.apply_batch, batch, STATE) == expected
