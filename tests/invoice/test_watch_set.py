"""The watchers' set of addresses is kept between polls: each poll adds the invoices minted since
the last one, and a full read every FULL_READ_SECONDS lets go of those that left the window."""

from __future__ import annotations

import uuid

from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common.config import Config
from services.invoice import ledger as ledger_module
from services.invoice.ledger import InvoiceLedger
from services.invoice.service import InvoiceBuilt
from tests.invoice.test_invoice_service import ETH_XPUB, invoice_request, new_merchant, platform


async def test_a_poll_adds_new_invoices_and_the_full_read_lets_go_of_closed_ones(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "watch@shop.test", {"ethereum": ETH_XPUB})
        first = await p.invoices.CreateInvoice(invoice_request(merchant.id, title="First"))
        ledger = InvoiceLedger(p.runtime, InvoiceBuilt.of(p.runtime).app)
        assert set(await ledger.watched("ethereum")) == {first.payment_address.lower()}

        second = await p.invoices.CreateInvoice(invoice_request(merchant.id, title="Second"))
        # The first closes and its late window passes (as if two days went by).
        await p.pool(first.id).execute(
            """UPDATE invoices SET status = 'cancelled', expires_at = NOW() - interval '2 days'
               WHERE id = $1""",
            uuid.UUID(first.id),
        )
        # The next poll only asks for what was minted since: the new invoice is watched at once,
        # the closed one is still followed (its late payment would still be recorded)...
        polled = await ledger.watched("ethereum")
        assert set(polled) == {first.payment_address.lower(), second.payment_address.lower()}
        assert polled[second.payment_address.lower()].invoice_id == uuid.UUID(second.id)

        # ...until the full read, which takes the set from the table again.
        ledger._watching["ethereum"].read_at -= ledger_module.FULL_READ_SECONDS
        assert set(await ledger.watched("ethereum")) == {second.payment_address.lower()}


async def test_an_invoice_minted_before_the_last_poll_but_committed_after_it_is_still_found(
    config: Config,
) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "late-commit@shop.test", {"ethereum": ETH_XPUB})
        ledger = InvoiceLedger(p.runtime, InvoiceBuilt.of(p.runtime).app)
        assert await ledger.watched("ethereum") == {}
        created = await p.invoices.CreateInvoice(invoice_request(merchant.id, title="Slow"))
        # Its id was minted a minute before the last poll (a slow rate lookup, a long commit).
        ledger._watching["ethereum"].polled_at = ledger._watching["ethereum"].polled_at + (
            ledger_module.NEW_INVOICE_LOOKBACK / 2
        )
        found = await ledger.watched("ethereum")
        assert set(found) == {created.payment_address.lower()}
        assert found[created.payment_address.lower()].asset == "ETH"
        listed = await p.invoices.ListInvoices(pb.ListInvoicesRequest(merchant_id=merchant.id))
        assert [i.id for i in listed.invoices] == [created.id]
