"""The Bitcoin watcher and its Esplora client against a loopback Esplora over an in-memory chain."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import httpx
import pytest

from libs.common.addresses import derive_bitcoin_address
from libs.common.networks import NetworkConfig
from services.invoice.chains.base import OpenPayment, PaymentKey, Transfer, WatchedAddress
from services.invoice.chains.bitcoin import BitcoinWatcher
from services.invoice.chains.esplora import EsploraClient, EsploraError, TxOutput, TxStatus, parse_transaction
from tests.common.support import poll
from tests.invoice.fake_esplora import FUNDING_ADDRESS, FakeEsplora, Fault

ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1"
    "ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)
A, B, C = (derive_bitcoin_address(ZPUB, i) for i in range(3))
UNWATCHED = derive_bitcoin_address(ZPUB, 99)
REQUIRED = 3


# --- an in-memory ledger: our own Ledger protocol, implemented faithfully ------------------------


@dataclass
class Payment:
    transfer: Transfer
    invoice_id: uuid.UUID
    confirmations: int = 0
    state: str = "open"  # open -> confirmed | retracted (retracted -> open when seen again)
    reason: str | None = None


def _unmined(t: Transfer) -> Transfer:
    return replace(t, block_number=None, block_hash=None, block_time=None)


class MemoryLedger:
    """Idempotent by PaymentKey, like the real one: a sighting seen again changes nothing unless
    its block changed; a retracted payment seen again is followed again."""

    def __init__(self, required_confirmations: int = REQUIRED) -> None:
        self.required = required_confirmations
        self.addresses: dict[str, WatchedAddress] = {}
        self.payments: dict[PaymentKey, Payment] = {}
        self.journal: list[tuple[str, PaymentKey]] = []

    def watch(self, address: str) -> None:
        self.addresses[address] = WatchedAddress(address, uuid.uuid4(), "BTC")

    def credited(self, address: str) -> int:
        return sum(
            p.transfer.amount_units
            for p in self.payments.values()
            if p.transfer.to_address == address and p.state != "retracted"
        )

    def events(self, kind: str) -> list[PaymentKey]:
        return [key for k, key in self.journal if k == kind]

    async def watched(self, network: str) -> Mapping[str, WatchedAddress]:
        assert network == "bitcoin"
        return dict(self.addresses)

    async def open_payments(self, network: str) -> Sequence[OpenPayment]:
        return [
            OpenPayment(
                key, p.invoice_id, p.transfer.to_address, p.transfer.block_number, p.transfer.block_hash
            )
            for key, p in self.payments.items()
            if p.state == "open"
        ]

    async def record(self, transfers: Sequence[Transfer], tip: int) -> None:
        for t in transfers:
            assert t.network == "bitcoin" and t.asset == "BTC"
            payment = self.payments.get(t.key)
            if payment is None:
                self.payments[t.key] = payment = Payment(t, self.addresses[t.to_address].invoice_id)
                self.journal.append(("detected", t.key))
            else:
                # The same key is the same output: only where it is mined may change.
                assert _unmined(payment.transfer) == _unmined(t)
                if payment.state == "confirmed":
                    continue  # final
                if payment.state == "retracted":
                    payment.state, payment.reason = "open", None
                    self.journal.append(("revived", t.key))
                if (payment.transfer.block_hash, payment.transfer.block_number) != (
                    t.block_hash,
                    t.block_number,
                ):
                    self.journal.append(("moved", t.key))
                payment.transfer = t
            self._count(t.key, payment, tip)

    async def retract(self, network: str, keys: Sequence[PaymentKey], reason: str) -> None:
        for key in keys:
            payment = self.payments[key]
            if payment.state == "open":
                payment.state, payment.reason, payment.confirmations = "retracted", reason, 0
                self.journal.append(("retracted", key))

    async def update_confirmations(self, network: str, tip: int) -> None:
        for key, payment in self.payments.items():
            if payment.state == "open":
                self._count(key, payment, tip)

    def _count(self, key: PaymentKey, payment: Payment, tip: int) -> None:
        block = payment.transfer.block_number
        payment.confirmations = 0 if block is None else max(tip - block + 1, 0)
        if payment.confirmations >= self.required:
            payment.state = "confirmed"
            self.journal.append(("confirmed", key))


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
async def client(esplora: FakeEsplora) -> AsyncIterator[EsploraClient]:
    async with httpx.AsyncClient() as http:
        yield EsploraClient(esplora.base_url, client=http, timeout=5)


@pytest.fixture
def network(esplora: FakeEsplora) -> NetworkConfig:
    return NetworkConfig(
        name="bitcoin", kind="bitcoin", node_url=esplora.base_url, confirmations=REQUIRED, poll_seconds=0.05
    )


@pytest.fixture
def ledger() -> MemoryLedger:
    memory = MemoryLedger()
    for address in (A, B, C):
        memory.watch(address)
    return memory


@pytest.fixture
def watcher(network: NetworkConfig, ledger: MemoryLedger, client: EsploraClient) -> BitcoinWatcher:
    return BitcoinWatcher(network, ledger, client)


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


# --- the client ----------------------------------------------------------------------------------

TXID = "a" * 64
BLOCK = "00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054"


def esplora_tx(**overrides: Any) -> dict[str, Any]:
    """A transaction as blockstream.info returns it (trimmed of nothing the format requires)."""
    tx: dict[str, Any] = {
        "txid": TXID,
        "version": 2,
        "locktime": 0,
        "vin": [
            {
                "txid": "b" * 64,
                "vout": 1,
                "prevout": {
                    "scriptpubkey": "0014751e76e8199196d454941c45d1b3a323f1433bd6",
                    "scriptpubkey_asm": "OP_0 OP_PUSHBYTES_20 751e76e8199196d454941c45d1b3a323f1433bd6",
                    "scriptpubkey_type": "v0_p2wpkh",
                    "scriptpubkey_address": FUNDING_ADDRESS,
                    "value": 100_000,
                },
                "scriptsig": "",
                "scriptsig_asm": "",
                "witness": ["3044", "02"],
                "is_coinbase": False,
                "sequence": 4294967293,
            }
        ],
        "vout": [
            {
                "scriptpubkey": "6a0474657374",
                "scriptpubkey_asm": "OP_RETURN OP_PUSHBYTES_4 74657374",
                "scriptpubkey_type": "op_return",
                "value": 0,
            },
            {
                "scriptpubkey": "0014c0cebcd6c3d3ca8c75dc5ec62ebe55330ef910e2",
                "scriptpubkey_asm": "OP_0 OP_PUSHBYTES_20 c0cebcd6c3d3ca8c75dc5ec62ebe55330ef910e2",
                "scriptpubkey_type": "v0_p2wpkh",
                "scriptpubkey_address": A,
                "value": 98_000,
            },
        ],
        "size": 222,
        "weight": 561,
        "fee": 2_000,
        "status": {
            "confirmed": True,
            "block_height": 880_000,
            "block_hash": BLOCK,
            "block_time": 1_738_000_000,
        },
    }
    tx.update(overrides)
    return tx


def test_a_transaction_is_parsed_from_esplora_s_format() -> None:
    tx = parse_transaction(esplora_tx())
    assert tx.txid == TXID
    assert tx.outputs == (TxOutput(0, None, 0), TxOutput(1, A, 98_000))
    assert tx.from_address == FUNDING_ADDRESS
    assert tx.status == TxStatus(True, 880_000, BLOCK, 1_738_000_000)


def test_an_unconfirmed_status_and_a_coinbase_input_are_parsed() -> None:
    coinbase_in = {"txid": "0" * 64, "vout": 4294967295, "prevout": None, "is_coinbase": True}
    tx = parse_transaction(esplora_tx(vin=[coinbase_in], status={"confirmed": False}))
    assert tx.status == TxStatus(False, None, None)
    assert tx.from_address is None
    nulls = {"confirmed": False, "block_height": None, "block_hash": None, "block_time": None}
    assert parse_transaction(esplora_tx(status=nulls)).status == TxStatus(False, None, None)


def _with_value(value: object) -> dict[str, Any]:
    tx = esplora_tx()
    tx["vout"][1]["value"] = value
    return tx


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        (esplora_tx(txid="A" * 64), "txid"),
        (esplora_tx(txid="a" * 63), "txid"),
        ({k: v for k, v in esplora_tx().items() if k != "vout"}, "no vout"),
        (esplora_tx(vin={}), "lists"),
        (esplora_tx(vin=[{"prevout": "x"}]), "prevout"),
        (_with_value(Decimal("0.5")), "value"),
        (_with_value("98000"), "value"),
        (_with_value(True), "value"),
        (_with_value(-1), "value"),
        (esplora_tx(status={"confirmed": True, "block_height": 1}), "block_hash"),
        (esplora_tx(status={"confirmed": "yes"}), "confirmed"),
        (esplora_tx(status={"confirmed": True, "block_height": -2, "block_hash": BLOCK}), "block_height"),
        (
            esplora_tx(status={"confirmed": True, "block_height": 2, "block_hash": BLOCK, "block_time": "1"}),
            "block_time",
        ),
        ([], "no txid"),
    ],
)
def test_anything_but_esplora_s_format_is_refused(payload: Any, where: str) -> None:
    with pytest.raises(ValueError, match=where):
        parse_transaction(payload)


async def test_tip_height_and_block_hashes_are_read_as_text(
    esplora: FakeEsplora, client: EsploraClient
) -> None:
    hashes = esplora.chain.mine(2)
    assert await client.tip_height() == 2
    assert await client.block_hash_at(2) == hashes[-1]
    assert await client.block_hash_at(3) is None  # above the tip: Esplora's 404


async def test_an_unknown_transaction_is_none_and_a_known_one_is_parsed(
    esplora: FakeEsplora, client: EsploraClient
) -> None:
    txid = esplora.chain.pay((A, 1_234))
    tx = await client.transaction(txid)
    assert tx is not None and tx.outputs == (TxOutput(0, A, 1_234),)
    assert await client.tx_status(txid) == TxStatus(False, None, None)
    assert await client.transaction("f" * 64) is None
    assert await client.tx_status("f" * 64) is None


async def test_confirmed_history_is_paged_until_exhausted(
    esplora: FakeEsplora, client: EsploraClient
) -> None:
    chain = esplora.chain
    paid = [chain.pay((A, n + 1)) for n in range(60)]
    chain.mine()
    pending = chain.pay((A, 999))
    txs = await client.address_txs(A)
    # Newest first: the mempool one, then the block's transactions in reverse order.
    assert [tx.txid for tx in txs] == [pending, *reversed(paid)]
    assert sum(1 for path in esplora.hits if "/txs/chain/" in path) == 2


@pytest.mark.parametrize(
    ("path", "fault", "reason"),
    [
        ("/blocks/tip/height", Fault(500), "HTTP status 500"),
        ("/blocks/tip/height", Fault(200, b"-1"), "tip height is not"),
        ("/blocks/tip/height", Fault(200, b"\xff\xfe"), "not ASCII"),
        ("/block-height/0", Fault(200, b"zz"), "block hash"),
        ("/block-height/0", Fault(503), "HTTP status 503"),
        (f"/address/{A}/txs", Fault(200, b'{"txid": 1}', "application/json"), "not a list"),
        (f"/address/{A}/txs", Fault(200, b"[1]", "application/json"), "tx has no txid"),
        (f"/address/{A}/txs", Fault(200, b"[NaN]", "application/json"), "NaN"),
        (f"/address/{A}/txs", Fault(200, b"<html>", "text/html"), "not valid JSON"),
        (f"/tx/{TXID}", Fault(200, b"{}", "application/json"), "tx has no txid"),
    ],
)
async def test_a_bad_answer_is_an_esplora_error_naming_the_path(
    esplora: FakeEsplora, client: EsploraClient, path: str, fault: Fault, reason: str
) -> None:
    esplora.fail(path, fault)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "/blocks/tip/height": client.tip_height,
        "/block-height/0": lambda: client.block_hash_at(0),
        f"/address/{A}/txs": lambda: client.address_txs(A),
        f"/tx/{TXID}": lambda: client.transaction(TXID),
    }
    with pytest.raises(EsploraError, match=reason) as exc_info:
        await calls[path]()
    assert exc_info.value.path == path


async def test_a_silent_or_absent_server_is_an_esplora_error(esplora: FakeEsplora) -> None:
    esplora.fail("/blocks/tip/height", Fault(hang=True))
    async with EsploraClient(esplora.base_url, timeout=0.2) as client:
        with pytest.raises(EsploraError, match=r"no answer within 0\.2 s"):
            await client.tip_height()
    async with EsploraClient("http://127.0.0.1:9", timeout=2) as client:
        with pytest.raises(EsploraError, match="request failed"):
            await client.tip_height()
