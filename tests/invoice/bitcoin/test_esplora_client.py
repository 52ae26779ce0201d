"""The Esplora client: Esplora's transaction format parsed or refused, and every call against
a loopback Esplora, including bad, silent and absent answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from services.invoice.chains.esplora import EsploraClient, EsploraError, TxOutput, TxStatus, parse_transaction
from tests.invoice.bitcoin.memory_ledger import A
from tests.invoice.fake_esplora import FUNDING_ADDRESS, FakeEsplora, Fault

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
