"""The Bitcoin watcher against a loopback Esplora over an in-memory chain: detection,
confirmations, reorgs and the mempool, restarts and failed polls."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging

import httpx
import pytest

from libs.common.networks import NetworkConfig
from services.invoice.chains.base import PaymentKey, Transfer
from services.invoice.chains.bitcoin import BitcoinWatcher
from services.invoice.chains.esplora import EsploraClient, EsploraError
from tests.common.support import poll
from tests.invoice.bitcoin.memory_ledger import UNWATCHED, A, B, C, MemoryLedger
from tests.invoice.fake_esplora import FUNDING_ADDRESS, FakeEsplora, Fault

# --- detection, confirmations -------------------------------------------------------------------


async def test_a_mempool_payment_is_recorded_with_no_block(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    txid = esplora.chain.pay((A, 20_834), (UNWATCHED, 5_000))
    result = await watcher.poll_once()
    key = PaymentKey(txid, 0)
    assert ledger.payments[key].transfer == Transfer(
        network="bitcoin",
        key=key,
        to_address=A,
        from_address=FUNDING_ADDRESS,
        asset="BTC",
        amount_units=20_834,
        block_number=None,
        block_hash=None,
    )
    assert (ledger.payments[key].confirmations, ledger.payments[key].state) == (0, "open")
    assert list(ledger.payments) == [key]  # the change output to an unwatched address is not a payment
    assert (result.tip, result.seen, result.retracted, result.failed_addresses) == (0, 1, (), ())


async def test_a_mined_payment_records_its_block_and_counts_confirmations_from_the_tip(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    chain = esplora.chain
    chain.mine(4)
    key = PaymentKey(chain.pay((A, 50_000)), 0)
    await watcher.poll_once()
    (block_hash,) = chain.mine()
    await watcher.poll_once()
    payment = ledger.payments[key]
    assert (payment.transfer.block_number, payment.transfer.block_hash) == (5, block_hash)
    assert payment.transfer.block_time == chain.tip.time
    assert (payment.confirmations, payment.state) == (1, "open")

    chain.mine()
    await watcher.poll_once()
    assert ledger.payments[key].confirmations == 2
    chain.mine()
    await watcher.poll_once()
    assert (ledger.payments[key].confirmations, ledger.payments[key].state) == (3, "confirmed")
    assert await ledger.open_payments("bitcoin") == []
    assert ledger.events("detected") == [key] and ledger.events("moved") == [key]


async def test_several_outputs_to_watched_addresses_in_one_transaction_are_separate_payments(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    txid = esplora.chain.pay((A, 1_000), (B, 2_000), (None, 0), (A, 3_000), (UNWATCHED, 9_000))
    esplora.chain.mine()
    await watcher.poll_once()
    assert {key: p.transfer.amount_units for key, p in ledger.payments.items()} == {
        PaymentKey(txid, 0): 1_000,
        PaymentKey(txid, 1): 2_000,
        PaymentKey(txid, 3): 3_000,
    }
    assert (ledger.credited(A), ledger.credited(B)) == (4_000, 2_000)
    assert len(ledger.events("detected")) == 3


# --- reorgs and the mempool ---------------------------------------------------------------------


async def test_a_reorg_that_removes_the_block_retracts_the_payment_naming_the_block(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    chain = esplora.chain
    txid = chain.pay((A, 70_000))
    (orphaned,) = chain.mine()
    await watcher.poll_once()
    key = PaymentKey(txid, 0)
    assert ledger.payments[key].confirmations == 1

    chain.reorg(1, new_blocks=2, double_spent=[txid])
    result = await watcher.poll_once()
    payment = ledger.payments[key]
    assert payment.state == "retracted"
    assert payment.reason is not None
    assert "reorged away" in payment.reason and orphaned in payment.reason and "height 1" in payment.reason
    assert result.retracted == (key,)
    assert ledger.credited(A) == 0


async def test_a_payment_re_mined_in_another_block_is_recorded_again_not_retracted(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    chain = esplora.chain
    key = PaymentKey(chain.pay((A, 70_000)), 0)
    (orphaned,) = chain.mine()
    await watcher.poll_once()

    (replacement, _) = chain.reorg(1, new_blocks=2)  # the transaction is mined again at once
    await watcher.poll_once()
    payment = ledger.payments[key]
    assert (payment.transfer.block_number, payment.transfer.block_hash) == (1, replacement)
    assert replacement != orphaned
    assert (payment.state, payment.confirmations) == ("open", 2)
    assert ledger.events("retracted") == []
    assert ledger.credited(A) == 70_000


async def test_a_reorged_payment_back_in_the_mempool_is_unconfirmed_until_mined_again(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    chain = esplora.chain
    txid = chain.pay((A, 70_000))
    chain.mine()
    await watcher.poll_once()
    key = PaymentKey(txid, 0)

    chain.reorg(1, new_blocks=2, exclude=[txid])
    await watcher.poll_once()
    payment = ledger.payments[key]
    assert (payment.transfer.block_hash, payment.confirmations, payment.state) == (None, 0, "open")

    (block_hash,) = chain.mine()
    await watcher.poll_once()
    assert (ledger.payments[key].transfer.block_number, ledger.payments[key].transfer.block_hash) == (
        3,
        block_hash,
    )
    assert ledger.events("retracted") == []
    assert ledger.events("detected") == [key]


async def test_a_payment_dropped_from_the_mempool_is_retracted(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    txid = esplora.chain.pay((B, 12_345))
    await watcher.poll_once()
    esplora.chain.drop(txid)
    result = await watcher.poll_once()
    payment = ledger.payments[PaymentKey(txid, 0)]
    assert payment.state == "retracted"
    assert payment.reason is not None and "dropped from the mempool" in payment.reason
    assert result.retracted == (PaymentKey(txid, 0),)


async def test_a_payment_whose_block_is_not_the_best_chain_s_block_is_retracted_naming_it(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    # An Esplora whose address index still shows a block its best chain no longer has.
    chain = esplora.chain
    key = PaymentKey(chain.pay((A, 70_000)), 0)
    (stale,) = chain.mine()
    await watcher.poll_once()
    esplora.fail("/block-height/1", Fault(200, b"ab" * 32, "text/plain"))
    await watcher.poll_once()
    payment = ledger.payments[key]
    assert payment.state == "retracted"
    assert payment.reason is not None and stale in payment.reason


async def test_a_payment_past_the_listed_history_is_looked_up_not_retracted(
    esplora: FakeEsplora, ledger: MemoryLedger, network: NetworkConfig
) -> None:
    chain = esplora.chain
    key = PaymentKey(chain.pay((A, 1_000)), 0)
    for _ in range(30):
        chain.pay((A, 1))
    async with httpx.AsyncClient() as http:
        one_page = EsploraClient(esplora.base_url, client=http, max_pages=1)
        watcher = BitcoinWatcher(network, ledger, one_page)
        await watcher.poll_once()  # all 31 in the mempool: all listed
        assert ledger.payments[key].transfer.block_number is None
        chain.mine()  # 31 transactions in one block: the payment is listed 31st, past one page
        result = await watcher.poll_once()
        assert esplora.hits[f"/tx/{key.tx_hash}"] == 1
        assert (ledger.payments[key].state, ledger.payments[key].transfer.block_number) == ("open", 1)
        assert result.retracted == ()
        chain.mine()
        await watcher.poll_once()
    assert ledger.payments[key].confirmations == 2
    assert ledger.events("retracted") == []


# --- restarts, failures ---------------------------------------------------------------------------


async def test_a_restarted_watcher_re_reading_the_chain_counts_nothing_twice(
    esplora: FakeEsplora, ledger: MemoryLedger, network: NetworkConfig, watcher: BitcoinWatcher
) -> None:
    chain = esplora.chain
    first = chain.pay((A, 10_000), (B, 20_000))
    chain.mine()
    second = chain.pay((A, 5_000))
    await watcher.poll_once()
    await watcher.poll_once()
    before = copy.deepcopy(ledger.payments)

    async with httpx.AsyncClient() as http:
        restarted = BitcoinWatcher(network, ledger, EsploraClient(esplora.base_url, client=http))
        await restarted.poll_once()
        await restarted.poll_once()
        assert ledger.payments == before
        chain.mine()
        await restarted.poll_once()

    assert sorted(ledger.events("detected"), key=str) == sorted(
        [PaymentKey(first, 0), PaymentKey(first, 1), PaymentKey(second, 0)], key=str
    )
    assert (ledger.credited(A), ledger.credited(B)) == (15_000, 20_000)
    assert ledger.payments[PaymentKey(second, 0)].confirmations == 1
    assert ledger.payments[PaymentKey(first, 0)].confirmations == 2


@pytest.mark.parametrize(
    "fault",
    [
        Fault(500),
        Fault(200, b'[{"txid": "nope"}]', "application/json"),
        Fault(200, b"[{", "application/json"),
    ],
    ids=["http-500", "wrong-shape", "broken-json"],
)
async def test_an_address_whose_history_cannot_be_read_keeps_its_payments(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher, fault: Fault
) -> None:
    chain = esplora.chain
    on_a, on_b = chain.pay((A, 1_000)), chain.pay((B, 2_000))
    await watcher.poll_once()
    chain.drop(on_a)
    chain.drop(on_b)
    esplora.fail(f"/address/{A}/", fault)
    result = await watcher.poll_once()
    assert result.failed_addresses == (A,)
    assert ledger.payments[PaymentKey(on_a, 0)].state == "open"  # no data is not "gone"
    assert esplora.hits[f"/tx/{on_a}"] == 0
    assert ledger.payments[PaymentKey(on_b, 0)].state == "retracted"

    esplora.heal()
    await watcher.poll_once()
    assert ledger.payments[PaymentKey(on_a, 0)].state == "retracted"


async def test_a_poll_whose_tip_cannot_be_read_raises_esplora_error_and_changes_nothing(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher
) -> None:
    esplora.chain.pay((A, 1_000))
    esplora.fail("/blocks/tip/height")
    with pytest.raises(EsploraError, match="HTTP status 500") as exc_info:
        await watcher.poll_once()
    assert exc_info.value.status == 500
    assert ledger.payments == {}


async def test_the_run_loop_survives_failed_polls_and_the_next_poll_works(
    esplora: FakeEsplora, ledger: MemoryLedger, watcher: BitcoinWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="checkout.invoice.bitcoin")
    esplora.fail("/blocks/tip/height", Fault(200, b"not a height"))
    txid = esplora.chain.pay((C, 7_000))
    task = asyncio.create_task(watcher.run())
    try:
        await poll(lambda: watcher.failed_polls >= 2, what="two failed polls")
        assert watcher.last_error is not None and "tip height is not" in watcher.last_error
        assert any("poll failed" in r.getMessage() and "tip height" in r.getMessage() for r in caplog.records)
        esplora.fail("/blocks/tip/height", Fault(500))
        await poll(lambda: "HTTP status 500" in (watcher.last_error or ""), what="a 500")

        esplora.heal()
        await poll(lambda: PaymentKey(txid, 0) in ledger.payments, what="the payment")
        await poll(lambda: watcher.last_error is None, what="a clean poll")
        assert not task.done()
        assert any("pays 7000 sats" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
