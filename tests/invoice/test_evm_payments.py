"""Payments on a real local EVM chain (ganache over JSON-RPC): signed transactions move invoices.

The invoice service runs with its watcher pointed at the session's dev chain; every test starts
the watcher at the current block, so what earlier tests sent is not seen again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg
from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common.config import Config
from libs.common.events import STATUS_EVENTS
from libs.common.networks import parse_networks
from services.invoice import projections
from services.invoice.pricing import CRYPTO
from tests.common.support import ethereum_account_xpub, poll_for
from tests.invoice.test_invoice_service import (
    CALLER,
    ETH_XPUB,
    MNEMONIC,
    Platform,
    invoice_request,
    new_merchant,
    platform,
)
from tools.devchain.testing import EvmChain

log = logging.getLogger("tests.evm")
CONFIRMATIONS = 3


def units(amount: str, asset: str) -> int:
    return int(Decimal(amount).scaleb(CRYPTO[asset].decimals))


async def chain_config(config: Config, chain: EvmChain, **overrides: Any) -> Config:
    start = await chain.block_number()
    networks = parse_networks(
        chain.networks_json(confirmations=CONFIRMATIONS, poll_seconds=0.1, start_block=start)
    )
    return dataclasses.replace(
        config,
        networks=networks,
        ethereum_chain_id=chain.chain_id,
        expiry_poll_seconds=0.2,
        invoice_min_expiry_seconds=1,
        **overrides,
    )


@dataclasses.dataclass
class Watching(Platform):
    merchant_ids: dict[str, str] = dataclasses.field(default_factory=dict)


@asynccontextmanager
async def watching(config: Config) -> AsyncIterator[Watching]:
    async with platform(config) as p:
        yield Watching(p.merchants, p.invoices, p.runtime)


async def invoice_in(p: Watching, merchant_id: str, invoice_id: str, *statuses: str) -> pb.Invoice:
    async def check() -> pb.Invoice | None:
        invoice = await p.invoices.GetInvoice(
            pb.GetInvoiceRequest(merchant_id=merchant_id, invoice_id=invoice_id)
        )
        return invoice if invoice.status in statuses else None

    return await poll_for(check, timeout=20, what=f"invoice {invoice_id} to be {'/'.join(statuses)}")


async def payments(p: Watching, invoice: pb.Invoice) -> list[pb.Payment]:
    response = await p.invoices.ListPayments(
        pb.ListPaymentsRequest(merchant_id=invoice.merchant_id, invoice_id=invoice.id)
    )
    return list(response.payments)


async def audit(p: Watching, invoice: pb.Invoice) -> list[pb.AuditEntry]:
    response = await p.invoices.ListAuditEntries(
        pb.ListAuditEntriesRequest(merchant_id=invoice.merchant_id, invoice_id=invoice.id, limit=200)
    )
    return list(response.entries)


async def new_invoice(p: Watching, email: str, *, xpub: str = ETH_XPUB, **overrides: Any) -> pb.Invoice:
    """An invoice of the merchant with this email (created on first use). Merchants of one test
    share no xpub: two merchants with one key would be given the same addresses."""
    merchant_id = p.merchant_ids.get(email)
    if merchant_id is None:
        merchant = await new_merchant(p, email, {"ethereum": xpub})
        merchant_id = p.merchant_ids[email] = merchant.id
    return await p.invoices.CreateInvoice(invoice_request(merchant_id, **overrides), metadata=CALLER)


async def test_exact_eth_payment_is_paid_then_confirmed(config: Config, evm_chain: EvmChain) -> None:
    async with watching(await chain_config(config, evm_chain)) as p:
        invoice = await new_invoice(p, "eth@shop.test")
        wei = units(invoice.crypto_amount, "ETH")
        payer = evm_chain.accounts[1]
        tx = await evm_chain.send_eth(payer, invoice.payment_address, wei)
        receipt = await evm_chain.wait_receipt(tx)
        mined = time.monotonic()
        paid = await invoice_in(p, invoice.merchant_id, invoice.id, "paid", "confirmed")
        log.info("detection latency (receipt -> paid): %.0f ms", (time.monotonic() - mined) * 1000)
        assert paid.status == "paid" and paid.amount_paid == invoice.crypto_amount and not paid.overpaid
        assert paid.HasField("paid_at")

        [payment] = await payments(p, invoice)
        assert (payment.tx_hash, payment.output_index, payment.asset) == (tx.lower(), -1, "ETH")
        assert payment.amount == invoice.crypto_amount
        assert payment.from_address.lower() == payer.address.lower()
        assert payment.block_number == int(receipt["blockNumber"], 16)
        assert payment.status == "confirming" and payment.required_confirmations == CONFIRMATIONS

        await evm_chain.mine(CONFIRMATIONS - 1)
        confirmed = await invoice_in(p, invoice.merchant_id, invoice.id, "confirmed")
        assert confirmed.amount_paid == invoice.crypto_amount
        [payment] = await payments(p, invoice)
        assert payment.status == "confirmed" and payment.confirmations >= CONFIRMATIONS

        trail = await audit(p, invoice)
        events = [e.event for e in trail]
        assert events[0] == "invoice.created"
        for expected in (
            "invoice.payment_detected",
            "invoice.paid",
            "invoice.payment_confirmed",
            "invoice.confirmed",
        ):
            assert expected in events
        assert {e.actor for e in trail if e.event != "invoice.created"} == {"system:watcher"}
        assert events.index("invoice.paid") < events.index("invoice.confirmed")

        view = await p.invoices.GetCheckout(pb.GetCheckoutRequest(invoice_id=invoice.id))
        assert view.status == "confirmed" and [x.tx_hash for x in view.payments] == [tx.lower()]


async def test_erc20_token_payment_is_paid_then_confirmed(config: Config, evm_chain: EvmChain) -> None:
    async with watching(await chain_config(config, evm_chain)) as p:
        invoice = await new_invoice(p, "usdc@shop.test", crypto_currency="USDC")
        assert invoice.crypto_amount == "10.000000"
        assert f"ethereum:{evm_chain.token}@{evm_chain.chain_id}/transfer" in invoice.payment_uri
        tx = await evm_chain.send_token(evm_chain.accounts[2], invoice.payment_address, units("10", "USDC"))
        await evm_chain.wait_receipt(tx)
        await invoice_in(p, invoice.merchant_id, invoice.id, "paid", "confirmed")
        await evm_chain.mine(CONFIRMATIONS - 1)
        confirmed = await invoice_in(p, invoice.merchant_id, invoice.id, "confirmed")
        assert confirmed.amount_paid == "10.000000"
        [payment] = await payments(p, invoice)
        assert payment.asset == "USDC" and payment.output_index >= 0 and payment.tx_hash == tx.lower()


async def test_ether_sent_to_a_token_invoice_does_not_pay_it(config: Config, evm_chain: EvmChain) -> None:
    async with watching(await chain_config(config, evm_chain)) as p:
        invoice = await new_invoice(p, "wrong-asset@shop.test", crypto_currency="USDC")
        await evm_chain.wait_receipt(
            await evm_chain.send_eth(evm_chain.accounts[1], invoice.payment_address, 10**18)
        )
        token_tx = await evm_chain.send_token(
            evm_chain.accounts[1], invoice.payment_address, units("4", "USDC")
        )
        await evm_chain.wait_receipt(token_tx)
        partial = await invoice_in(p, invoice.merchant_id, invoice.id, "partial")
        assert partial.amount_paid == "4.000000"
        assert [x.tx_hash for x in await payments(p, invoice)] == [token_tx.lower()]


async def test_underpaid_is_partial_until_topped_up_and_overpaid_is_flagged(
    config: Config, evm_chain: EvmChain
) -> None:
    async with watching(await chain_config(config, evm_chain)) as p:
        invoice = await new_invoice(p, "partial@shop.test")
        due = units(invoice.crypto_amount, "ETH")
        payer = evm_chain.accounts[3]
        await evm_chain.wait_receipt(await evm_chain.send_eth(payer, invoice.payment_address, due // 2))
        partial = await invoice_in(p, invoice.merchant_id, invoice.id, "partial")
        assert Decimal(partial.amount_paid) == Decimal(due // 2).scaleb(-18)
        await evm_chain.wait_receipt(await evm_chain.send_eth(payer, invoice.payment_address, due - due // 2))
        paid = await invoice_in(p, invoice.merchant_id, invoice.id, "paid", "confirmed")
        assert paid.amount_paid == invoice.crypto_amount and not paid.overpaid
        assert len(await payments(p, invoice)) == 2

        within = await new_invoice(
            p, "partial@shop.test", payment_tolerance=pb.PaymentTolerance(underpaid_percent="1.0")
        )
        short = units(within.crypto_amount, "ETH") * 995 // 1000  # 0.5% short, 1% tolerated
        await evm_chain.wait_receipt(await evm_chain.send_eth(payer, within.payment_address, short))
        await invoice_in(p, within.merchant_id, within.id, "paid", "confirmed")

        over = await new_invoice(p, "partial@shop.test")
        await evm_chain.wait_receipt(
            await evm_chain.send_eth(payer, over.payment_address, units(over.crypto_amount, "ETH") * 2)
        )
        overpaid = await invoice_in(p, over.merchant_id, over.id, "paid", "confirmed")
        assert overpaid.overpaid


async def test_unpaid_invoice_expires_and_a_late_payment_is_recorded(
    config: Config, evm_chain: EvmChain
) -> None:
    async with watching(await chain_config(config, evm_chain)) as p:
        invoice = await new_invoice(p, "late@shop.test", expires_in_seconds=1)
        expired = await invoice_in(p, invoice.merchant_id, invoice.id, "expired")
        assert expired.status_reason
        tx = await evm_chain.send_eth(
            evm_chain.accounts[4], invoice.payment_address, units(invoice.crypto_amount, "ETH")
        )
        await evm_chain.wait_receipt(tx)

        async def late() -> pb.Invoice | None:
            now = await p.invoices.GetInvoice(
                pb.GetInvoiceRequest(merchant_id=invoice.merchant_id, invoice_id=invoice.id)
            )
            return now if now.paid_late else None

        flagged = await poll_for(late, timeout=20, what="the late payment to be recorded")
        assert flagged.status == "expired"
        [payment] = await payments(p, invoice)
        assert payment.late and payment.tx_hash == tx.lower()
        assert [e.actor for e in await audit(p, invoice) if e.event == "invoice.expired"] == ["system:expiry"]


async def test_a_reorg_takes_a_counted_payment_back_and_the_audit_says_why(
    config: Config, evm_chain: EvmChain
) -> None:
    async with watching(await chain_config(config, evm_chain)) as p:
        invoice = await new_invoice(p, "reorg@shop.test")
        snapshot = await evm_chain.snapshot()
        tx = await evm_chain.send_eth(
            evm_chain.accounts[5], invoice.payment_address, units(invoice.crypto_amount, "ETH")
        )
        await evm_chain.wait_receipt(tx)
        await invoice_in(p, invoice.merchant_id, invoice.id, "paid")
        await evm_chain.revert(snapshot)  # the block with the payment is gone
        await evm_chain.mine(2)  # and the chain moves on without it
        reopened = await invoice_in(p, invoice.merchant_id, invoice.id, "pending")
        assert reopened.amount_paid == "0.000000000000000000"
        assert "no longer in the chain" in reopened.status_reason
        [payment] = await payments(p, invoice)
        assert payment.status == "reorged" and "no longer in the chain" in payment.status_reason
        trail = [e.event for e in await audit(p, invoice)]
        assert trail[-2:] == ["invoice.payment_reorged", "invoice.reopened"]


async def test_a_restarted_watcher_counts_every_payment_exactly_once(
    config: Config, evm_chain: EvmChain
) -> None:
    chain_cfg = await chain_config(config, evm_chain)
    async with watching(chain_cfg) as p:
        invoice = await new_invoice(p, "restart@shop.test")
        due = units(invoice.crypto_amount, "ETH")
        await evm_chain.wait_receipt(
            await evm_chain.send_eth(evm_chain.accounts[6], invoice.payment_address, due // 4)
        )
        await invoice_in(p, invoice.merchant_id, invoice.id, "partial")
    # Stopped between blocks: two more payments and some blocks arrive while nobody watches.
    for _ in range(2):
        await evm_chain.wait_receipt(
            await evm_chain.send_eth(evm_chain.accounts[6], invoice.payment_address, due // 4)
        )
    await evm_chain.mine(2)
    async with watching(chain_cfg) as p:
        partial = await invoice_in(p, invoice.merchant_id, invoice.id, "partial")

        async def three() -> list[pb.Payment] | None:
            found = await payments(p, invoice)
            return found if len(found) == 3 else None

        await poll_for(three, timeout=20, what="three payments")
        await evm_chain.wait_receipt(
            await evm_chain.send_eth(evm_chain.accounts[6], invoice.payment_address, due - 3 * (due // 4))
        )
        paid = await invoice_in(p, invoice.merchant_id, invoice.id, "paid", "confirmed")
        assert paid.amount_paid == invoice.crypto_amount and not paid.overpaid
        assert partial.amount_paid != paid.amount_paid
    async with watching(chain_cfg) as p:  # and once more: nothing is counted twice
        await evm_chain.mine(CONFIRMATIONS)
        again = await invoice_in(p, invoice.merchant_id, invoice.id, "confirmed")
        assert again.amount_paid == invoice.crypto_amount and not again.overpaid
        assert len(await payments(p, invoice)) == 4

        # The read models of a paid invoice rebuild from its events to the same rows.
        pool = p.pool(invoice.id)
        read = {
            "invoices": "SELECT * FROM invoices ORDER BY id",
            "payments": "SELECT * FROM payments ORDER BY id",
            "audit_entries": "SELECT * FROM audit_entries ORDER BY id",
        }
        live = {name: [dict(r) for r in await pool.fetch(sql)] for name, sql in read.items()}
        async with pool.acquire() as conn, conn.transaction():
            await projections.rebuild(conn, p.runtime.store)
        assert {name: [dict(r) for r in await pool.fetch(sql)] for name, sql in read.items()} == live
        assert len(live["payments"]) == 4 and len(live["audit_entries"]) > 10


async def test_a_watcher_whose_saved_blocks_are_not_on_the_node_rescans_instead_of_skipping(
    config: Config, evm_chain: EvmChain
) -> None:
    chain_cfg = await chain_config(config, evm_chain)
    async with watching(chain_cfg) as p:
        # An account no other test pays: the rescan reads old blocks, where its addresses are unpaid.
        invoice = await new_invoice(p, "reset@shop.test", xpub=ethereum_account_xpub(MNEMONIC, 9))
    # As if the node had been reset under a watcher that had followed a longer chain.
    tip = await evm_chain.block_number()
    for shard in chain_cfg.shards:
        conn = await asyncpg.connect(chain_cfg.shard_dsn(shard))
        try:
            await conn.execute("DELETE FROM invoice.chain_blocks")
            await conn.executemany(
                "INSERT INTO invoice.chain_blocks (network, block_number, block_hash, parent_hash) "
                "VALUES ('ethereum', $1, $2, $3)",
                [(tip + 1000 + n, f"0x{n:064x}", f"0x{n + 1:064x}") for n in range(3)],
            )
        finally:
            await conn.close()
    tx = await evm_chain.send_eth(
        evm_chain.accounts[7], invoice.payment_address, units(invoice.crypto_amount, "ETH")
    )
    await evm_chain.wait_receipt(tx)
    async with watching(chain_cfg) as p:
        paid = await invoice_in(p, invoice.merchant_id, invoice.id, "paid", "confirmed")
        assert paid.amount_paid == invoice.crypto_amount


async def test_a_payment_the_watcher_first_sees_fully_confirmed_is_announced_paid_then_confirmed(
    config: Config, evm_chain: EvmChain
) -> None:
    chain_cfg = await chain_config(config, evm_chain)
    async with watching(chain_cfg) as p:
        invoice = await new_invoice(p, "seen-late@shop.test", xpub=ethereum_account_xpub(MNEMONIC, 8))
    # Nobody watches while the payment is mined and buried under enough blocks.
    await evm_chain.wait_receipt(
        await evm_chain.send_eth(
            evm_chain.accounts[2], invoice.payment_address, units(invoice.crypto_amount, "ETH")
        )
    )
    await evm_chain.mine(CONFIRMATIONS)
    async with watching(chain_cfg) as p:
        confirmed = await invoice_in(p, invoice.merchant_id, invoice.id, "confirmed")
        assert confirmed.amount_paid == invoice.crypto_amount and confirmed.HasField("paid_at")
        statuses = [e.event for e in await audit(p, invoice) if e.event in STATUS_EVENTS]
        assert statuses == ["invoice.paid", "invoice.confirmed"]
        # The events the other services consume say the same, each once.
        async with p.pool(invoice.id).acquire() as conn:
            stored = await p.runtime.store.load(conn, uuid.UUID(invoice.id))
        announced = [
            (e.data["previous_status"], e.data["status"]) for e in stored if e.event_type in STATUS_EVENTS
        ]
        assert announced == [("pending", "paid"), ("paid", "confirmed")]
