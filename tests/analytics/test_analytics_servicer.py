"""The analytics servicer in process (grpc_testing, tests/inprocess.py): statuses and field
violations for its date ranges and shard numbers, over a real PostgreSQL. (Analytics has no
NOT_FOUND: a merchant with no activity has zeros; a shard this instance does not serve is the
UNAVAILABLE of a stale routing table.)"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from checkout.analytics.v1 import analytics_pb2 as pb

from libs.common import ids
from libs.common.config import Config
from libs.common.errors import FieldViolation
from libs.common.limits import ANALYTICS_RANGE_MAX_DAYS
from services.analytics.service import SPEC
from tests.inprocess import InProcess, assert_unavailable_while_database_down, migrated, servicers


@pytest.fixture
async def analytics(config: Config) -> AsyncIterator[InProcess]:
    # One instance serving shard 0 only, as deployed one per shard.
    async with migrated(SPEC, dataclasses.replace(config, served_shards=frozenset({0}))) as runtime:
        yield servicers(SPEC, runtime)


def merchant() -> str:
    return str(ids.new_merchant_id("owner@stats.test"))


async def test_both_bad_dates_of_a_range_are_named(analytics: InProcess) -> None:
    request = pb.GetDailyMetricsRequest(merchant_id=merchant(), from_date="2026-02-30", to_date="")
    answer = await analytics.call("GetDailyMetrics", request)
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert answer.violations() == [
        FieldViolation("from", "must be a date as YYYY-MM-DD"),
        FieldViolation("to", "is required (YYYY-MM-DD)"),
    ]


async def test_a_range_longer_than_allowed_is_invalid_on_to(analytics: InProcess) -> None:
    request = pb.GetPlatformMetricsRequest(shard=0, from_date="2020-01-01", to_date="2026-01-01")
    answer = await analytics.call("GetPlatformMetrics", request)
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert answer.violations() == [
        FieldViolation("to", f"the range may cover at most {ANALYTICS_RANGE_MAX_DAYS} days")
    ]


async def test_a_shard_that_does_not_exist_is_invalid_and_one_served_elsewhere_unavailable(
    analytics: InProcess, config: Config
) -> None:
    missing = await analytics.call("GetShardView", pb.GetShardViewRequest(shard=config.shard_count))
    assert missing.code == grpc.StatusCode.INVALID_ARGUMENT
    assert missing.violations() == [
        FieldViolation("shard", f"must be a registered shard ({', '.join(map(str, config.shards))})")
    ]

    elsewhere = await analytics.call("GetShardView", pb.GetShardViewRequest(shard=1))
    assert (elsewhere.code, elsewhere.details) == (
        grpc.StatusCode.UNAVAILABLE,
        "shard 1 is not served by this analytics instance",
    )

    served = await analytics.call("GetShardView", pb.GetShardViewRequest(shard=0))
    assert (served.code, served.response) == (grpc.StatusCode.OK, pb.ShardView(shard=0))


async def test_a_database_that_is_down_is_unavailable_and_logged_with_the_request_id(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_unavailable_while_database_down(
        SPEC, config, "GetSummary", pb.GetSummaryRequest(merchant_id=merchant(), period="7d"), caplog
    )
