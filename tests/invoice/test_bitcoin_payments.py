"""Bitcoin payments through the invoice service: its watcher follows a loopback Esplora that
answers in the real API's format, and the invoice moves as the chain does."""

from __future__ import annotations

import dataclasses

from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common.config import Config
from libs.common.networks import NetworkConfig
from tests.invoice.fake_esplora import FakeEsplora
from tests.invoice.test_evm_payments import Watching, audit, invoice_in, payments, units, watching
from tests.invoice.test_invoice_service import BTC_ZPUB, CALLER, invoice_request, new_merchant

REQUIRED = 2


def bitcoin_config(config: Config, esplora: FakeEsplora) -> Config:
    network = NetworkConfig(
        name="bitcoin", kind="bitcoin", node_url=esplora.base_url, confirmations=REQUIRED, poll_seconds=0.1
    )
    return dataclasses.replace(config, networks=(network,))


async def btc_invoice(p: Watching) -> pb.Invoice:
    merchant = await new_merchant(p, "btc@shop.test", {"bitcoin": BTC_ZPUB})
    return await p.invoices.CreateInvoice(
        invoice_request(merchant.id, crypto_currency="BTC"), metadata=CALLER
    )


async def test_a_bitcoin_payment_is_paid_from_the_mempool_and_confirmed_by_blocks(
    config: Config, esplora: FakeEsplora
) -> None:
    async with watching(bitcoin_config(config, esplora)) as p:
        invoice = await btc_invoice(p)
        assert invoice.payment_address.startswith("bc1q") and invoice.crypto_amount == "0.00020834"
        txid = esplora.chain.pay((invoice.payment_address, units(invoice.crypto_amount, "BTC")), (None, 5000))
        paid = await invoice_in(p, invoice.merchant_id, invoice.id, "paid")
        assert paid.amount_paid == invoice.crypto_amount
        [payment] = await payments(p, invoice)
        assert (payment.tx_hash, payment.output_index, payment.status) == (txid, 0, "detected")
        assert not payment.HasField("block_number")

        esplora.chain.mine(REQUIRED)
        confirmed = await invoice_in(p, invoice.merchant_id, invoice.id, "confirmed")
        assert confirmed.amount_paid == invoice.crypto_amount
        [payment] = await payments(p, invoice)
        assert payment.status == "confirmed" and payment.block_number == esplora.chain.tip.height - 1


async def test_a_bitcoin_payment_double_spent_in_a_reorg_reopens_the_invoice(
    config: Config, esplora: FakeEsplora
) -> None:
    async with watching(bitcoin_config(config, esplora)) as p:
        invoice = await btc_invoice(p)
        txid = esplora.chain.pay((invoice.payment_address, units(invoice.crypto_amount, "BTC")))
        esplora.chain.mine()
        await invoice_in(p, invoice.merchant_id, invoice.id, "paid")
        esplora.chain.reorg(1, new_blocks=2, double_spent=[txid])
        reopened = await invoice_in(p, invoice.merchant_id, invoice.id, "pending")
        assert reopened.amount_paid == "0.00000000" and reopened.status_reason
        [payment] = await payments(p, invoice)
        assert payment.status == "reorged"
        assert [e.event for e in await audit(p, invoice)][-2:] == [
            "invoice.payment_reorged",
            "invoice.reopened",
        ]
