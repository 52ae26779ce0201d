"""What must hold of the money and the merchants' view after the faults, read from the shard
databases and the chain: each invoice's amount_paid is what its address received; every fully
paid invoice reached `confirmed` (and said `invoice.paid` on the way); each intended invoice
exists once; the analytics count each invoice once; every event a merchant subscribed to reached
its webhook receiver."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from libs.common.config import Config
from libs.common.evm_rpc import EvmRpc
from tools.devchain import tx
from tools.faults.load import DECIMALS, Merchant

Rows = list[asyncpg.Record]


async def _fetch(config: Config, shard: int, sql: str, *args: object) -> Rows:
    conn = await asyncpg.connect(config.shard_dsn(shard))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _everywhere(config: Config, sql: str, *args: object) -> Rows:
    rows: Rows = []
    for shard in config.shards:
        rows += await _fetch(config, shard, sql, *args)
    return rows


@dataclass
class LedgerAudit:
    invoices: int = 0
    missing_invoices: list[str] = field(default_factory=list)  # a 201 the platform forgot
    duplicate_invoices: int = 0  # more invoices of a merchant than it asked for
    underpaid: list[str] = field(default_factory=list)  # amount_paid < what the chain holds: lost
    overcounted: list[str] = field(default_factory=list)  # amount_paid > what the chain holds
    fully_paid: int = 0
    unconfirmed: list[str] = field(default_factory=list)  # fully paid, not confirmed
    paid_event_missing: list[str] = field(default_factory=list)  # confirmed without invoice.paid
    analytics_created_off: dict[str, int] = field(default_factory=dict)  # merchant -> counted - real
    analytics_paid_off: dict[str, int] = field(default_factory=dict)
    webhooks_expected: int = 0
    webhooks_missing: list[str] = field(default_factory=list)
    webhook_duplicates: int = 0

    @property
    def lost(self) -> int:
        under = sum(
            -v for v in [*self.analytics_created_off.values(), *self.analytics_paid_off.values()] if v < 0
        )
        return len(self.missing_invoices) + len(self.underpaid) + under

    @property
    def double_counted(self) -> int:
        over = sum(
            v for v in [*self.analytics_created_off.values(), *self.analytics_paid_off.values()] if v > 0
        )
        return self.duplicate_invoices + len(self.overcounted) + over

    def summary(self) -> dict[str, Any]:
        return {
            "invoices": self.invoices,
            "missing_invoices": self.missing_invoices[:20],
            "duplicate_invoices": self.duplicate_invoices,
            "underpaid": self.underpaid[:20],
            "overcounted": self.overcounted[:20],
            "fully_paid": self.fully_paid,
            "unconfirmed": self.unconfirmed[:20],
            "paid_event_missing": len(self.paid_event_missing),
            "analytics_created_off": self.analytics_created_off,
            "analytics_paid_off": self.analytics_paid_off,
            "webhooks_expected": self.webhooks_expected,
            "webhooks_missing": len(self.webhooks_missing),
            "webhook_duplicates": self.webhook_duplicates,
        }


async def received_on_chain(rpc: EvmRpc, token: str, rows: Iterable[asyncpg.Record]) -> dict[uuid.UUID, int]:
    """What each invoice's address holds of the invoice's asset, in base units (nobody spends
    from these addresses, so that is everything it received)."""
    found: dict[uuid.UUID, int] = {}
    for row in rows:
        address = row["payment_address"]
        if row["crypto_currency"] == "ETH":
            found[row["id"]] = await rpc.balance(address)
        else:
            found[row["id"]] = await tx.token_balance(rpc, token, address)
    return found


async def audit_ledger(
    config: Config,
    rpc: EvmRpc,
    token: str,
    merchants: list[Merchant],
    created: Iterable[str],
    intended_per_merchant: dict[str, int],
) -> LedgerAudit:
    audit = LedgerAudit()
    rows = await _everywhere(
        config,
        "SELECT id, merchant_id, crypto_currency, crypto_amount, amount_paid, status, payment_address "
        "FROM invoice.invoices",
    )
    audit.invoices = len(rows)
    known = {str(r["id"]) for r in rows}
    audit.missing_invoices = sorted(set(created) - known)
    per_merchant: dict[str, int] = {}
    for row in rows:
        per_merchant[str(row["merchant_id"])] = per_merchant.get(str(row["merchant_id"]), 0) + 1
    audit.duplicate_invoices = sum(
        max(0, per_merchant.get(m, 0) - n) for m, n in intended_per_merchant.items()
    )

    paid_events = {
        r["invoice_id"]
        for r in await _everywhere(
            config,
            "SELECT DISTINCT (event_data->>'invoice_id')::uuid AS invoice_id FROM invoice.events "
            "WHERE event_type = 'invoice.paid'",
        )
    }
    received = await received_on_chain(rpc, token, rows)
    for row in rows:
        decimals = DECIMALS[row["crypto_currency"]]
        counted = int(Decimal(row["amount_paid"]).scaleb(decimals))
        on_chain = received[row["id"]]
        if counted < on_chain:
            audit.underpaid.append(f"{row['id']}: {counted} of {on_chain}")
        elif counted > on_chain:
            audit.overcounted.append(f"{row['id']}: {counted} of {on_chain}")
        if on_chain and on_chain >= int(Decimal(row["crypto_amount"]).scaleb(decimals)):
            audit.fully_paid += 1
            if row["status"] != "confirmed":
                audit.unconfirmed.append(f"{row['id']}: {row['status']}")
            elif row["id"] not in paid_events:
                audit.paid_event_missing.append(str(row["id"]))

    paid_now = {r["id"] for r in rows if r["status"] in ("paid", "confirmed")}
    metrics = await _everywhere(
        config,
        "SELECT merchant_id, sum(invoices_created)::int AS created, sum(invoices_paid)::int AS paid "
        "FROM analytics.daily_metrics GROUP BY merchant_id",
    )
    counted_by = {str(r["merchant_id"]): (r["created"], r["paid"]) for r in metrics}
    for merchant in merchants:
        real_created = per_merchant.get(merchant.id, 0)
        real_paid = sum(1 for r in rows if str(r["merchant_id"]) == merchant.id and r["id"] in paid_now)
        counted_created, counted_paid = counted_by.get(merchant.id, (0, 0))
        if counted_created != real_created:
            audit.analytics_created_off[merchant.id] = counted_created - real_created
        if counted_paid != real_paid:
            audit.analytics_paid_off[merchant.id] = counted_paid - real_paid

    await _audit_webhooks(config, merchants, audit)
    return audit


async def _audit_webhooks(config: Config, merchants: list[Merchant], audit: LedgerAudit) -> None:
    """Each merchant subscribed to every invoice event before its first invoice: each of them
    that names the merchant is owed a delivery."""
    events = await _everywhere(
        config, "SELECT id, event_data->>'merchant_id' AS merchant_id FROM invoice.events"
    )
    by_merchant = {m.id: m for m in merchants}
    for row in events:
        merchant = by_merchant.get(row["merchant_id"] or "")
        if merchant is None:
            continue
        audit.webhooks_expected += 1
        times = merchant.receiver.received.get(str(row["id"]), 0)
        if times == 0:
            audit.webhooks_missing.append(str(row["id"]))
        audit.webhook_duplicates += max(0, times - 1)
