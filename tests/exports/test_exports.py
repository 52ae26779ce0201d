"""CSV exports through the merchant client (and `checkout-admin export`) against the real stack:
what a merchant opening the file in a spreadsheet or reading it with the csv module sees."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from checkout_client import Client, InvalidArgument
from checkout_client.types import Merchant

from tests.cli.test_admin import admin
from tests.common.support import ethereum_account_xpub, poll_for
from tools.devchain.testing import EvmChain
from tools.devstack import Stack

MNEMONIC = "test test test test test test test test test test test junk"
ITEMS = [{"name": "Beans 1kg", "quantity": "3", "unit_price": "12.34"}]


def new_merchant(stack: Stack, name: str) -> tuple[Merchant, str]:
    """A fresh merchant with an xpub of its own (so its addresses are its alone) and its key."""
    xpub = ethereum_account_xpub(MNEMONIC, account=random.randrange(1, 2**30))
    with Client(stack.base_url, stack.admin_token) as operator:
        merchant = operator.create_merchant(
            business_name=name,
            contact_email=f"shop-{uuid.uuid4().hex[:8]}@shop.test",
            wallets={"ethereum": xpub},
        )
        key = operator.create_api_key(merchant["id"], name=name)["key"]
    assert key
    return merchant, key


def onboard(stack: Stack, name: str) -> str:
    return new_merchant(stack, name)[1]


def read_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith("\ufeff".encode()), "a byte order mark, for spreadsheets"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def test_the_invoices_csv_has_exact_amounts_metadata_columns_and_only_the_merchants_own_rows(
    stack: Stack,
) -> None:
    key, other_key = onboard(stack, "Export shop"), onboard(stack, "Other shop")
    with Client(stack.base_url, key) as client, Client(stack.base_url, other_key) as other:
        first = client.create_invoice(
            title='=HYPERLINK("http://evil.test")',
            items=ITEMS,
            tax="1.05",
            currency="USD",
            crypto_currency="ETH",
            metadata={"order": 42, "channel": "web", "tags": ["a", "b"]},
        )
        second = client.create_invoice(
            title='Plain, with a comma and "quotes"',
            items=ITEMS,
            currency="EUR",
            crypto_currency="ETH",
            metadata={"order": "A-7", "note": "@SUM(1+1)"},
        )
        # A third: the test stack reads pages of two rows (CHECKOUT_EXPORT_PAGE_ROWS), so the
        # file is streamed from two pages.
        third = client.create_invoice(title="No metadata", items=ITEMS, currency="USD", crypto_currency="ETH")
        foreign = other.create_invoice(
            title="Not yours", items=ITEMS, currency="USD", crypto_currency="ETH", metadata={"secret": "x"}
        )
        rows = read_csv(b"".join(client.export("invoices", today(), today())))

    # Newest first, none of the other merchant's.
    assert [r["id"] for r in rows] == [third["id"], second["id"], first["id"]]
    assert foreign["id"] not in {r["id"] for r in rows}
    plain, newest, oldest = rows
    assert (
        plain["metadata"] == plain["metadata.order"] == ""
        and plain["crypto_amount"] == third["crypto_amount"]
    )
    assert "metadata.secret" not in newest  # another merchant's keys make no columns either
    assert (oldest["subtotal"], oldest["tax"], oldest["total"]) == ("37.02", "1.05", "38.07")
    assert oldest["crypto_amount"] == first["crypto_amount"] and Decimal(oldest["crypto_amount"]) > 0
    assert oldest["currency"] == "USD" and newest["currency"] == "EUR"
    assert (oldest["metadata.order"], oldest["metadata.channel"], oldest["metadata.tags"]) == (
        "42",
        "web",
        '["a","b"]',
    )
    assert (newest["metadata.order"], newest["metadata.channel"]) == ("A-7", "")
    # Cells a spreadsheet would run as formulas are defused; text with commas survives as it is.
    assert oldest["title"] == '\'=HYPERLINK("http://evil.test")'
    assert newest["metadata.note"] == "'@SUM(1+1)"
    assert newest["title"] == 'Plain, with a comma and "quotes"'
    assert oldest["status"] == "pending" and oldest["created_at"] == first["created_at"]


def test_checkout_admin_export_writes_the_same_csv_to_a_file(stack: Stack, tmp_path: Path) -> None:
    key = onboard(stack, "CLI export shop")
    with Client(stack.base_url, key) as client:
        made = client.create_invoice(title="From the CLI", items=ITEMS, currency="USD", crypto_currency="ETH")
    target = tmp_path / "invoices.csv"
    day = today().isoformat()
    done = admin(stack, "export", "invoices", "--from", day, "--to", day, "--key", key, "-o", str(target))
    assert done.returncode == 0, done.stderr
    (row,) = read_csv(target.read_bytes())
    assert (row["id"], row["total"]) == (made["id"], "37.02")
    bad = admin(stack, "export", "payments", "--from", day, "--to", "2000-01-01", "--key", key)
    assert bad.returncode == 1 and "to" in bad.stderr


async def test_the_payments_csv_lists_payments_seen_on_chain_with_their_exact_amounts(
    stack: Stack, evm_chain: EvmChain
) -> None:
    key = onboard(stack, "Paid export shop")
    with Client(stack.base_url, key) as client:
        invoices = [
            client.create_invoice(title=f"Paid {n}", items=ITEMS, currency="USD", crypto_currency="ETH")
            for n in range(3)  # three payments: two pages of the test stack's two rows
        ]
        sent = {}
        for invoice in invoices:
            wei = int(Decimal(invoice["crypto_amount"]).scaleb(18))
            tx = await evm_chain.send_eth(evm_chain.accounts[9], invoice["payment_address"], wei)
            await evm_chain.wait_receipt(tx)
            sent[invoice["id"]] = (tx.lower(), invoice["crypto_amount"], invoice["payment_address"])

        async def exported() -> list[dict[str, str]] | None:
            rows = read_csv(b"".join(client.export("payments", today(), today())))
            return rows if len(rows) >= len(sent) else None

        rows = await poll_for(exported, timeout=30, what="the payments in the export")
    # Exact: each amount is the invoice's own decimal text.
    assert {r["invoice_id"]: (r["tx_hash"], r["amount"], r["to_address"]) for r in rows} == sent
    assert len(rows) == 3 and {(r["asset"], r["network"]) for r in rows} == {("ETH", "ethereum")}
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)  # oldest first, by id
    # An ETH transfer's own value has output index -1: a number, read as one, so not defused.
    assert {r["output_index"] for r in rows} == {"-1"}


def test_bad_ranges_are_422_naming_the_field(stack: Stack) -> None:
    key = onboard(stack, "Bad range shop")
    with Client(stack.base_url, key) as client:
        cases = [
            ("2026-02-30", "2026-03-01", "from"),  # no such day
            ("yesterday", None, "from"),
            ("2026-03-02", "2026-03-01", "to"),  # before from
            ("2024-01-01", "2026-01-01", "to"),  # over the longest range
        ]
        for start, end, field in cases:
            with pytest.raises(InvalidArgument) as invalid:
                b"".join(client.export("payments", start, end))
            assert [d["field"] for d in invalid.value.details] == [field], (start, end)
        # Without dates: the last 30 days, a file with its header only.
        (header, *_) = b"".join(client.export("invoices")).decode("utf-8-sig").splitlines()
        assert header.startswith("id,created_at,status,") and header.endswith(",metadata")
