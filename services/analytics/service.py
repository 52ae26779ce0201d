"""The analytics service's wiring: schema, partitions, servicers and the projections it consumes."""

from pathlib import Path

from libs.common.service import ServiceSpec
from services.analytics.grpc_api import register
from services.analytics.projections import invalidate_cache, projections
from services.analytics.repository import DAILY_METRICS

SPEC = ServiceSpec(
    name="analytics",
    service_dir=Path(__file__).parent,
    register=register,
    projections=projections,
    after_commit=invalidate_cache,
    partitioned=[DAILY_METRICS],
)
