"""The scale bench (tools/bench_scale.py) at a small size: it builds its shard through the real
migrations and reports every read query with its timings and the plans that ran. Not a speed
test: the figures at a million invoices come from `make bench-scale`."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from libs.common.config import Config
from tools import bench_scale
from tools.devservers import Servers
from tools.scale_data import Sizes


async def test_a_small_scale_run_reports_every_read_query_with_its_plans(servers: Servers) -> None:
    config = Config(
        database_url=servers.database_url, database_prefix=f"scale_{uuid.uuid4().hex[:8]}", shard_count=1
    )
    sizes = Sizes(invoices=3_000, merchants=20, largest=600)
    result = await bench_scale.run(config.shard_dsn(0), config, sizes, samples=3, warmup=6, reuse=False)

    assert result["rows"]["invoices"] == 3_000
    assert result["rows"]["merchant_directory"] == result["rows"]["merchant_profiles"] == 20
    # Payments, audit entries and metrics follow from the invoices.
    assert 3_000 < result["rows"]["payments"] < 6_000 and result["rows"]["audit_entries"] > 3_000
    assert 0 < result["rows"]["daily_metrics"] < 3_000
    largest = result["words"]
    assert largest["rare"].startswith("zx") and largest["mid"]

    queries = result["queries"]
    assert set(queries) == {q.name for q in bench_scale.catalogue(None, None, stub_samples())}  # type: ignore[arg-type]
    for name, entry in queries.items():
        assert entry["kind"] in bench_scale.TARGETS_MS, name
        assert 0 < entry["p50_ms"] <= entry["p99_ms"] <= entry["max_ms"], name
        assert entry["plans"], f"{name} has no plan notes"
        for plan in entry["plans"]:
            assert plan["plan_kind"] in ("generic", "custom") and plan["plan"], name
    # A common word fills the page from the merchant's newest invoices, never reading every match
    # through the GIN index; a rare one goes on to the index, with a plan made for that word.
    common = queries["search_common_word_largest"]["plans"]
    assert len(common) == 1 and not any("Bitmap Heap Scan" in line for line in common[0]["plan"])
    rare = queries["search_rare_word_largest"]["plans"]
    assert len(rare) == 2 and rare[1]["plan_kind"] == "custom"
    assert any("idx_invoices_merchant_search" in line for line in rare[1]["plan"])
    assert queries["search_common_word_largest"]["rows_median"] == bench_scale.PAGE
    assert queries["search_word_popular_elsewhere_largest"]["rows_median"] == 0
    # Date windows start and stop on the time-ordered id, instead of walking from the newest
    # invoice through every row the filter then throws away.
    for name in (
        "list_date_window_largest",
        "list_date_window_by_status_largest",
        "list_created_before_largest",
    ):
        conditions = " ".join(line for p in queries[name]["plans"] for line in p["plan"])
        assert "(id <" in conditions or "AND (id <" in conditions, (name, queries[name]["plans"])
    json.dumps(result)  # written as JSON as it is


def stub_samples() -> bench_scale.Samples:
    """Arguments for listing the catalogue's names (nothing runs)."""
    some = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    return bench_scale.Samples(
        largest=some, median=some, merchants=[some], invoice_ids=[some], paid_ids=[some],
        first_audit=[(some, some)], deep_ids=[some], customers=[some], addresses=[("ethereum", "0x")],
        tx_keys=[("ethereum", ["0x"], [0])], tips={}, mid_word="w", rare_word="r", now=now, newest=now,
    )  # fmt: skip
