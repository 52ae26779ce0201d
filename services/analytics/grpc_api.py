"""AnalyticsService over gRPC: the one place that knows the service's protobuf. Each method passes
its request's fields to the application and maps the answer (views.py) to its message
(libs/common/views.py); errors are mapped to gRPC statuses by the shared interceptor."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from checkout.analytics.v1 import analytics_pb2 as pb
from checkout.analytics.v1 import analytics_pb2_grpc

from libs.common.views import to_message
from services.analytics.application import AnalyticsApp


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, app: AnalyticsApp) -> None:
        self.app = app

    async def GetDailyMetrics(
        self,
        request: pb.GetDailyMetricsRequest,
        context: grpc.aio.ServicerContext[pb.GetDailyMetricsRequest, pb.GetDailyMetricsResponse],
    ) -> pb.GetDailyMetricsResponse:
        found = await self.app.get_daily_metrics(request.merchant_id, request.from_date, request.to_date)
        return pb.GetDailyMetricsResponse(data=[to_message(m, pb.DailyMetric) for m in found])

    async def GetShardView(
        self,
        request: pb.GetShardViewRequest,
        context: grpc.aio.ServicerContext[pb.GetShardViewRequest, pb.ShardView],
    ) -> pb.ShardView:
        return to_message(await self.app.get_shard_view(request.shard), pb.ShardView)

    async def GetSummary(
        self,
        request: pb.GetSummaryRequest,
        context: grpc.aio.ServicerContext[pb.GetSummaryRequest, pb.Summary],
    ) -> pb.Summary:
        summary = await self.app.get_summary(request.merchant_id, request.period, request.as_of)
        return to_message(summary, pb.Summary)

    async def GetPlatformMetrics(
        self,
        request: pb.GetPlatformMetricsRequest,
        context: grpc.aio.ServicerContext[pb.GetPlatformMetricsRequest, pb.PlatformMetrics],
    ) -> pb.PlatformMetrics:
        metrics = await self.app.get_platform_metrics(request.shard, request.from_date, request.to_date)
        return to_message(metrics, pb.PlatformMetrics)


def register(server: grpc.aio.Server, app: AnalyticsApp) -> Sequence[str]:
    analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(AnalyticsServicer(app), server)
    return [pb.DESCRIPTOR.services_by_name["AnalyticsService"].full_name]
