"""Reads at the seed's scale: every read query of the invoice and analytics services on a shard of
one million invoices (tools/scale_data.py), p50/p99 through the services' own repository code
on asyncpg pools with the services' settings, plus the plan PostgreSQL actually ran.

    make bench-scale                                # builds a fresh shard in a temp dir, ~10 min
    python -m tools.bench_scale --data-dir .dev/scale --reuse   # keep the shard, rerun in minutes
    python -m tools.bench_scale --invoices 20000 --merchants 50 --largest 4000   # a small run

Queries run interleaved, one of each per round, so load from elsewhere on the machine falls on
all of them alike. Each keeps its prepared statement across rounds, as a service's pool does: from
the sixth execution PostgreSQL may switch a statement to a generic plan, which EXPLAIN of the SQL
text never shows. The plan notes therefore come from `EXPLAIN EXECUTE` of the very prepared
statement after the same rounds, with `pg_prepared_statements`' generic/custom plan counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg

from libs.common import gctune, ids
from libs.common.config import Config
from libs.common.db import ShardPools
from services.analytics import repository as analytics
from services.invoice import ledger
from services.invoice import repository as invoices
from services.invoice.state import STATUSES
from tools.devservers import DevServers
from tools.plan_notes import Calls, Recorder, explain
from tools.scale_data import COMMON_WORD, POPULAR_ELSEWHERE, Built, Sizes, build, connect

ROOT = Path(__file__).resolve().parent.parent
PAGE = 51  # what ListInvoices asks for: the default page of 50, plus one to know there is more
LATE_WINDOW_SECONDS = ledger.DEFAULT_LATE_WINDOW_SECONDS

# p99 targets per kind of query (issue 18). The operator's shard counts have none: reported only.
TARGETS_MS: dict[str, float | None] = {
    "point": 5.0,
    "list": 20.0,
    "search": 50.0,
    "watcher": 10.0,
    "merchant_analytics": 50.0,
    "platform_analytics": 200.0,
    "operator": None,
}


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Query:
    name: str
    kind: str
    run: Callable[[int], Awaitable[object]]


@dataclass
class Samples:
    """Arguments drawn from the shard: query i of a kind uses element i modulo the list."""

    largest: uuid.UUID
    median: uuid.UUID
    merchants: list[uuid.UUID]
    invoice_ids: list[uuid.UUID]
    paid_ids: list[uuid.UUID]
    first_audit: list[tuple[uuid.UUID, uuid.UUID]]
    deep_ids: list[uuid.UUID]
    customers: list[uuid.UUID]
    addresses: list[tuple[str, str]]
    tx_keys: list[tuple[str, list[str], list[int]]]
    tips: dict[str, int]
    mid_word: str
    rare_word: str
    now: dt.datetime
    newest: dt.datetime

    @staticmethod
    def pick(values: Sequence[Any], i: int) -> Any:
        return values[i % len(values)]


async def draw_samples(conn: asyncpg.Connection, built: Built) -> Samples:
    largest, median = uuid.UUID(built.largest_merchant), uuid.UUID(built.median_merchant)
    total = built.counts["invoices"]
    percent = min(100.0, 100 * 1000 / total)
    sampled = await conn.fetch(
        f"SELECT id, status FROM invoices TABLESAMPLE BERNOULLI ({percent}) REPEATABLE (18) LIMIT 400"
    )
    invoice_ids = [r["id"] for r in sampled]
    first_audit = await conn.fetch(
        """SELECT DISTINCT ON (invoice_id) invoice_id, id FROM audit_entries WHERE invoice_id = ANY($1)
           ORDER BY invoice_id, event_version""",
        invoice_ids,
    )
    largest_share = 100 * 2000 / max(1, built.counts["invoices"])
    deep = await conn.fetch(
        f"""SELECT id FROM invoices TABLESAMPLE BERNOULLI ({min(100.0, largest_share * 10)}) REPEATABLE (18)
            WHERE merchant_id = $1 LIMIT 400""",
        largest,
    )
    customers = await conn.fetch(
        """SELECT customer_id FROM invoices WHERE merchant_id = $1 AND customer_id IS NOT NULL
           GROUP BY customer_id HAVING count(*) >= 3 ORDER BY customer_id LIMIT 400""",
        largest,
    )
    addresses = await conn.fetch(
        """SELECT network, payment_address FROM invoices TABLESAMPLE BERNOULLI ($1) REPEATABLE (18)
           LIMIT 400""",
        percent,
    )
    keys = await conn.fetch(
        """SELECT network, array_agg(tx_hash) AS hashes, array_agg(output_index) AS outputs
           FROM (SELECT network, tx_hash, output_index, row_number() OVER () / 3 AS batch
                 FROM payments TABLESAMPLE BERNOULLI ($1) REPEATABLE (18) LIMIT 600) picked
           GROUP BY network, batch""",
        percent,
    )
    tips = {r["network"]: r["tip"] for r in await conn.fetch(
        "SELECT network, max(block_number) AS tip FROM payments GROUP BY network"
    )}  # fmt: skip
    return Samples(
        largest=largest,
        median=median,
        merchants=[r["merchant_id"] for r in await conn.fetch("SELECT merchant_id FROM merchant_profiles")],
        invoice_ids=invoice_ids,
        paid_ids=[r["id"] for r in sampled if r["status"] == "confirmed"] or invoice_ids,
        first_audit=[(r["invoice_id"], r["id"]) for r in first_audit],
        deep_ids=[r["id"] for r in deep] or invoice_ids,
        customers=[r["customer_id"] for r in customers] or [largest],
        addresses=[(r["network"], r["payment_address"]) for r in addresses],
        tx_keys=[(r["network"], list(r["hashes"]), list(r["outputs"])) for r in keys],
        tips=tips,
        mid_word=built.mid_word,
        rare_word=built.rare_word,
        now=dt.datetime.now(dt.UTC),
        newest=await conn.fetchval("SELECT created_at FROM invoices ORDER BY id DESC LIMIT 1"),
    )


def catalogue(inv: invoices.Executor, ana: asyncpg.Pool, s: Samples) -> list[Query]:
    """Every read query of the two services, named by what a user or a job asks."""
    pick = Samples.pick
    Filter = invoices.InvoiceFilter

    def window(i: int, days: int) -> tuple[dt.datetime, dt.datetime]:
        end = s.now - dt.timedelta(days=30 + (i * 7) % 300)
        return end - dt.timedelta(days=days), end

    def listing(i: int, **where: Any) -> Awaitable[object]:
        return invoices.invoices(inv, Filter(where.pop("merchant_id", s.largest), **where), PAGE)

    today = s.now.date()
    # What a poll asks for: what was minted since the last poll a second ago, read back by the
    # ledger's lookback, at the newest invoice of the shard (its "now" when it was built).
    since_last_poll = ids.first_id_at(s.newest - dt.timedelta(seconds=1) - ledger.NEW_INVOICE_LOOKBACK)

    def summary(days_back: int | None) -> Awaitable[object]:
        start = None if days_back is None else today - dt.timedelta(days=days_back)
        return analytics.merchant_totals(ana, s.largest, start, today)

    queries = [
        Query("invoice_by_id", "point", lambda i: invoices.invoice(inv, pick(s.invoice_ids, i))),
        Query("payments_of_invoice", "point", lambda i: invoices.payments(inv, pick(s.paid_ids, i))),
        Query("audit_first_page", "point",
              lambda i: invoices.audit_entries(inv, pick(s.first_audit, i)[0], None, PAGE)),
        Query("audit_next_page", "point",
              lambda i: invoices.audit_entries(inv, pick(s.first_audit, i)[0], pick(s.first_audit, i)[1], PAGE)),
        Query("merchant_profile", "point", lambda i: invoices.merchant_profile(inv, pick(s.merchants, i))),
        Query("invoice_at_address", "point",
              lambda i: invoices.invoice_at_address(inv, *pick(s.addresses, i))),
        Query("paid_invoice", "point",
              lambda i: analytics.paid_invoice(cast(Any, ana), pick(s.paid_ids, i))),
        Query("list_first_page_largest", "list", lambda i: listing(i)),
        Query("list_first_page_any_merchant", "list",
              lambda i: listing(i, merchant_id=pick(s.merchants, i))),
        Query("list_deep_cursor_largest", "list", lambda i: listing(i, before_id=pick(s.deep_ids, i))),
        Query("list_by_status_largest", "list", lambda i: listing(i, status=pick(STATUSES, i))),
        Query("list_by_customer_largest", "list", lambda i: listing(i, customer_id=pick(s.customers, i))),
        Query("list_date_window_largest", "list",
              lambda i: listing(i, created_after=window(i, 7)[0], created_before=window(i, 7)[1])),
        Query("list_date_window_by_status_largest", "list",
              lambda i: listing(i, status="expired", created_after=window(i, 30)[0],
                                created_before=window(i, 30)[1])),
        Query("list_created_before_largest", "list", lambda i: listing(i, created_before=window(i, 0)[1])),
        Query("search_common_word_largest", "search", lambda i: listing(i, search=COMMON_WORD)),
        Query("search_mid_word_largest", "search", lambda i: listing(i, search=s.mid_word)),
        Query("search_rare_word_largest", "search", lambda i: listing(i, search=s.rare_word)),
        Query("search_word_popular_elsewhere_largest", "search",
              lambda i: listing(i, search=POPULAR_ELSEWHERE)),
        Query("search_common_word_next_page_largest", "search",
              lambda i: listing(i, search=COMMON_WORD, before_id=pick(s.deep_ids, i))),
        Query("search_common_word_any_merchant", "search",
              lambda i: listing(i, merchant_id=pick(s.merchants, i), search=COMMON_WORD)),
        Query("watcher_poll_new_invoices_ethereum", "watcher",
              lambda i: invoices.invoices_minted_since(inv, "ethereum", since_last_poll)),
        Query("watcher_poll_new_invoices_bitcoin", "watcher",
              lambda i: invoices.invoices_minted_since(inv, "bitcoin", since_last_poll)),
        # Once a minute (ledger.FULL_READ_SECONDS), not per poll: a bulk read, a list's target.
        Query("watcher_full_read_ethereum", "list",
              lambda i: invoices.watched_invoices(inv, "ethereum", LATE_WINDOW_SECONDS)),
        Query("watcher_full_read_bitcoin", "list",
              lambda i: invoices.watched_invoices(inv, "bitcoin", LATE_WINDOW_SECONDS)),
        Query("open_payments_ethereum", "watcher", lambda i: invoices.open_payments(inv, "ethereum")),
        Query("open_payments_bitcoin", "watcher", lambda i: invoices.open_payments(inv, "bitcoin")),
        Query("invoices_to_recount_ethereum", "watcher",
              lambda i: invoices.invoices_to_recount(inv, "ethereum", s.tips.get("ethereum", 0) + 1)),
        Query("payments_by_keys", "watcher", lambda i: invoices.payments_by_keys(inv, *pick(s.tx_keys, i))),
        Query("due_for_expiry", "watcher", lambda i: invoices.due_for_expiry(inv, 200)),
        Query("daily_metrics_30d_largest", "merchant_analytics",
              lambda i: analytics.daily_metrics(ana, s.largest, today - dt.timedelta(days=29), today)),
        Query("daily_metrics_366d_largest", "merchant_analytics",
              lambda i: analytics.daily_metrics(ana, s.largest, today - dt.timedelta(days=365), today)),
        Query("daily_metrics_90d_any_merchant", "merchant_analytics",
              lambda i: analytics.daily_metrics(ana, pick(s.merchants, i), today - dt.timedelta(days=89), today)),
        Query("summary_7d_largest", "merchant_analytics", lambda i: summary(6)),
        Query("summary_90d_largest", "merchant_analytics", lambda i: summary(89)),
        Query("summary_all_largest", "merchant_analytics", lambda i: summary(None)),
        Query("platform_metrics_30d", "platform_analytics",
              lambda i: analytics.platform_metrics(ana, today - dt.timedelta(days=29), today)),
        Query("platform_metrics_90d", "platform_analytics",
              lambda i: analytics.platform_metrics(ana, today - dt.timedelta(days=89), today)),
        Query("shard_view_counts", "operator", lambda i: analytics.shard_counts(ana)),
        Query("shard_stats_invoice_count", "operator", lambda i: invoices.count_invoices(inv)),
    ]  # fmt: skip
    return queries


def _rows(result: object) -> int:
    if isinstance(result, list | tuple):
        return sum(_rows(r) if isinstance(r, list | tuple) else 1 for r in result)
    return 0 if result is None else 1


async def measure(queries: list[Query], samples: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Interleaved rounds: every query once per round; the first `warmup` rounds are not kept
    (each pool connection has then run each statement past the plan cache's five custom plans)."""
    times: dict[str, list[float]] = {q.name: [] for q in queries}
    rows: dict[str, list[int]] = {q.name: [] for q in queries}
    for i in range(warmup + samples):
        for query in queries:
            started = time.perf_counter()
            result = await query.run(i)
            elapsed = (time.perf_counter() - started) * 1000
            if i >= warmup:
                times[query.name].append(elapsed)
                rows[query.name].append(_rows(result))
    report = {}
    for query in queries:
        t = times[query.name]
        p99, target = percentile(t, 99), TARGETS_MS[query.kind]
        report[query.name] = {
            "kind": query.kind,
            "target_p99_ms": target,
            "p50_ms": round(percentile(t, 50), 2),
            "p95_ms": round(percentile(t, 95), 2),
            "p99_ms": round(p99, 2),
            "mean_ms": round(statistics.fmean(t), 2),
            "max_ms": round(max(t), 2),
            "within_target": None if target is None else p99 < target,
            "rows_median": statistics.median(rows[query.name]),
        }
    return report


# -- plan notes ---------------------------------------------------------------------------------


async def plan_notes(dsn: str, samples: Samples, rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Each query's statements as the plan cache runs them after `rounds` interleaved rounds."""
    conns = {schema: await connect(dsn, schema) for schema in ("invoice", "analytics")}
    try:
        recorders = {schema: Recorder(conn) for schema, conn in conns.items()}
        queries = catalogue(cast(Any, recorders["invoice"]), cast(Any, recorders["analytics"]), samples)
        last: dict[str, tuple[str, Calls]] = {}
        for i in range(rounds):
            for query in queries:
                for recorder in recorders.values():
                    recorder.calls.clear()
                await query.run(i)
                schema, recorder = next((k, r) for k, r in recorders.items() if r.calls)
                last[query.name] = (schema, list(recorder.calls))
        return {name: await explain(conns[schema], calls) for name, (schema, calls) in last.items()}
    finally:
        for conn in conns.values():
            await conn.close()


# -- the run --------------------------------------------------------------------------------------


async def run(
    dsn: str, config: Config, sizes: Sizes, samples: int, warmup: int, reuse: bool
) -> dict[str, Any]:
    load_before = os.getloadavg()
    built = await build(dsn, sizes, reuse=reuse)
    conn = await connect(dsn, "invoice")
    try:
        drawn = await draw_samples(conn, built)
        server = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    pools = {schema: ShardPools(config, schema) for schema in ("invoice", "analytics")}
    for p in pools.values():
        await p.open([0])
    try:
        queries = catalogue(pools["invoice"][0], pools["analytics"][0], drawn)
        gctune.tune()  # as the services run (libs/common/service.py): their collector, not the default
        report = await measure(queries, samples, warmup)
    finally:
        for p in pools.values():
            await p.close()
    notes = await plan_notes(dsn, drawn, rounds=warmup)
    for name, entry in report.items():
        entry["plans"] = notes.get(name, [])
    over = [name for name, entry in report.items() if entry["within_target"] is False]
    return {
        "command": "make bench-scale",
        "sizes": asdict(sizes),
        "rows": built.counts,
        "build_seconds": built.seconds,
        "words": {
            "common": COMMON_WORD,
            "mid": built.mid_word,
            "rare": built.rare_word,
            "popular_elsewhere": POPULAR_ELSEWHERE,
        },
        "machine": {
            "python": platform.python_version(),
            "postgres": server,
            "cpus": os.cpu_count(),
            "gc_threshold": list(gc.get_threshold()),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "pool": {"min_size": config.pool_min_size, "max_size": config.pool_max_size},
        "samples_per_query": samples,
        "targets_p99_ms": TARGETS_MS,
        "over_target": over,
        "queries": report,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_scale", description=__doc__.split("\n")[0])
    defaults = Sizes()
    parser.add_argument("--invoices", type=int, default=defaults.invoices)
    parser.add_argument("--merchants", type=int, default=defaults.merchants)
    parser.add_argument(
        "--largest", type=int, default=defaults.largest, help="the largest merchant's invoices"
    )
    parser.add_argument("--samples", type=int, default=200, help="timed runs of each query")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first")
    parser.add_argument("--data-dir", help="keep PostgreSQL's data here (default: a temp dir, removed)")
    parser.add_argument("--reuse", action="store_true", help="skip the build when --data-dir holds one")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench-scale.json"))
    args = parser.parse_args(argv)
    sizes = Sizes(invoices=args.invoices, merchants=args.merchants, largest=args.largest)
    with contextlib.ExitStack() as stack:
        data_dir = (
            Path(args.data_dir) if args.data_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        servers = stack.enter_context(DevServers(data_dir / "servers", persistent=bool(args.data_dir)))
        config = Config(database_url=servers.database_url, database_prefix="bench_scale", shard_count=1)
        result = asyncio.run(run(config.shard_dsn(0), config, sizes, args.samples, args.warmup, args.reuse))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(name) for name in result["queries"])
    print(f"{'query':<{width}}  {'p50 ms':>8}  {'p99 ms':>8}  {'target':>7}")
    for name, entry in result["queries"].items():
        mark = "  OVER" if entry["within_target"] is False else ""
        target = "-" if entry["target_p99_ms"] is None else f"{entry['target_p99_ms']:.0f}"
        print(f"{name:<{width}}  {entry['p50_ms']:>8.2f}  {entry['p99_ms']:>8.2f}  {target:>7}{mark}")
    machine = result["machine"]
    print(f"load average (1, 5, 15 min) before {machine['load_average_before']}, after "
          f"{machine['load_average_after']}, on {machine['cpus']} cpus")  # fmt: skip
    print(f"written to {out}")


if __name__ == "__main__":
    main()
