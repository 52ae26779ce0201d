"""The query of the CSV exports (GET /v1/exports/{invoices,payments}.csv)."""

from __future__ import annotations

from pydantic import Field

from libs.common import limits
from services.gateway.schemas.base import Day, QueryModel

MAX_DAYS = limits.EXPORT_RANGE_MAX_DAYS
# Without `from`, an export covers this many days ending on `to`.
DEFAULT_DAYS = 30


class ExportQuery(QueryModel):
    start: Day | None = Field(
        default=None,
        alias="from",
        description=f"First day (UTC), inclusive; default: the {DEFAULT_DAYS} days ending on `to`.",
    )
    end: Day | None = Field(
        default=None,
        alias="to",
        description=f"Last day (UTC), inclusive; default today; at most {MAX_DAYS} days after `from`.",
    )
