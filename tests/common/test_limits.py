"""Every column that stores what a client sent is sized by libs/common/limits.py: the migrations
of all four services, applied for real, are checked against the limits' values, so a limit raised
without its column (or a column narrowed under its limit) fails here, not in a consumer's retry
loop (issue 9, item 2a)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from libs.common import limits
from libs.common.config import Config
from libs.common.db import migrate_shard, migrations_for

# Unbounded: exact NUMERIC at any magnitude, for money that sums (a day of invoices) or that
# another service copies. A total is bounded by TOTAL_MAX, a sum of them by nothing.
MONEY = "money"
COLUMNS: dict[str, dict[tuple[str, str], int | str]] = {
    "invoice": {
        ("invoices", "title"): limits.TITLE_MAX_CHARS,
        ("invoices", "description"): limits.DESCRIPTION_MAX_CHARS,
        ("invoices", "customer_email"): limits.EMAIL_MAX_CHARS,
        ("invoices", "currency"): limits.CURRENCY_CODE_MAX_CHARS,
        ("invoices", "crypto_currency"): limits.CRYPTO_SYMBOL_MAX_CHARS,
        ("invoices", "status_reason"): limits.CANCEL_REASON_MAX_CHARS,
        ("invoices", "subtotal"): MONEY,
        ("invoices", "tax"): MONEY,
        ("invoices", "total"): MONEY,
        ("invoices", "crypto_amount"): MONEY,
        ("invoices", "amount_paid"): MONEY,
        ("audit_entries", "request_id"): limits.REQUEST_ID_MAX_CHARS,
    },
    "customer": {
        ("customers", "email"): limits.EMAIL_MAX_CHARS,
        ("payment_history", "amount"): MONEY,
        ("payment_history", "currency"): limits.CURRENCY_CODE_MAX_CHARS,
    },
    "analytics": {
        ("daily_metrics", "amount_created"): MONEY,
        ("daily_metrics", "amount_paid"): MONEY,
        ("daily_metrics", "currency"): limits.CURRENCY_CODE_MAX_CHARS,
        ("paid_invoices", "amount"): MONEY,
    },
    "merchant": {
        ("merchants", "business_name"): limits.BUSINESS_NAME_MAX_CHARS,
        ("merchants", "contact_email"): limits.EMAIL_MAX_CHARS,
        ("api_keys", "name"): limits.API_KEY_NAME_MAX_CHARS,
        ("webhook_endpoints", "url"): limits.WEBHOOK_URL_MAX_CHARS,
        ("notification_templates", "subject"): limits.TEMPLATE_SUBJECT_MAX_CHARS,
        ("notification_templates", "body_template"): limits.TEMPLATE_BODY_MAX_CHARS,
        ("notification_deliveries", "recipient"): limits.EMAIL_MAX_CHARS,
        ("invoice_summaries", "title"): limits.TITLE_MAX_CHARS,
        ("invoice_summaries", "customer_email"): limits.EMAIL_MAX_CHARS,
        ("invoice_summaries", "currency"): limits.CURRENCY_CODE_MAX_CHARS,
        ("invoice_summaries", "total"): MONEY,
        ("invoice_summaries", "crypto_amount"): MONEY,
        ("invoice_summaries", "amount_paid"): MONEY,
    },
}


async def test_every_column_downstream_holds_the_largest_value_the_limits_accept(
    config: Config, repo_root: Path
) -> None:
    dsn = config.shard_dsn(0)
    problems: list[str] = []
    for service, columns in COLUMNS.items():
        schema = f"limits_{service}"
        await migrate_shard(dsn, schema, migrations_for(repo_root / "services" / service))
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                """SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision
                   FROM information_schema.columns WHERE table_schema = $1""",
                schema,
            )
        finally:
            await conn.close()
        found = {(r["table_name"], r["column_name"]): r for r in rows}
        for (table, column), needed in columns.items():
            row = found.get((table, column))
            where = f"{service}: {table}.{column}"
            if row is None:
                problems.append(f"{where} does not exist")
            elif needed == MONEY:
                if row["data_type"] != "numeric" or row["numeric_precision"] is not None:
                    problems.append(f"{where} is {row['data_type']}({row['numeric_precision']}), not NUMERIC")
            elif row["character_maximum_length"] is not None and row["character_maximum_length"] < needed:
                problems.append(f"{where} holds {row['character_maximum_length']} characters, not {needed}")
    assert problems == []
