"""AnalyticsService over gRPC: thin adapters onto the application (errors are mapped by the
shared interceptor)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from checkout.analytics.v1 import analytics_pb2 as pb
from checkout.analytics.v1 import analytics_pb2_grpc

from services.analytics.application import AnalyticsApp


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, app: AnalyticsApp) -> None:
        self.app = app

    async def GetDailyMetrics(
        self,
        request: pb.GetDailyMetricsRequest,
        context: grpc.aio.ServicerContext[pb.GetDailyMetricsRequest, pb.GetDailyMetricsResponse],
    ) -> pb.GetDailyMetricsResponse:
        return await self.app.get_daily_metrics(request)

    async def GetShardView(
        self,
        request: pb.GetShardViewRequest,
        context: grpc.aio.ServicerContext[pb.GetShardViewRequest, pb.ShardView],
    ) -> pb.ShardView:
        return await self.app.get_shard_view(request)

    async def GetSummary(
        self,
        request: pb.GetSummaryRequest,
        context: grpc.aio.ServicerContext[pb.GetSummaryRequest, pb.Summary],
    ) -> pb.Summary:
        return await self.app.get_summary(request)

    async def GetPlatformMetrics(
        self,
        request: pb.GetPlatformMetricsRequest,
        context: grpc.aio.ServicerContext[pb.GetPlatformMetricsRequest, pb.PlatformMetrics],
    ) -> pb.PlatformMetrics:
        return await self.app.get_platform_metrics(request)


def register(server: grpc.aio.Server, app: AnalyticsApp) -> Sequence[str]:
    analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(AnalyticsServicer(app), server)
    return [pb.DESCRIPTOR.services_by_name["AnalyticsService"].full_name]
