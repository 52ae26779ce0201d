"""The analytics service's composition root: schema, partitions, and what `build` makes for a
runtime (the servicer over its application, the projections it consumes, the cache hook)."""

from pathlib import Path

from libs.common.composition import Built, ServiceSpec
from libs.common.service import Runtime
from services.analytics.application import AnalyticsApp
from services.analytics.grpc_api import register
from services.analytics.projections import invalidate_cache, projections
from services.analytics.repository import DAILY_METRICS


def build(runtime: Runtime) -> Built:
    app = AnalyticsApp(runtime)
    return Built(
        register=lambda server: register(server, app),
        projections=projections(runtime),
        after_commit=invalidate_cache(runtime),
    )


SPEC = ServiceSpec(
    name="analytics",
    service_dir=Path(__file__).parent,
    build=build,
    partitioned=[DAILY_METRICS],
)
