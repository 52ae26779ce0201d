"""MerchantService over gRPC: thin adapters onto the application (errors are mapped by the
shared interceptor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from checkout.merchant.v1 import merchant_pb2 as pb
from checkout.merchant.v1 import merchant_pb2_grpc

from libs.common.service import Runtime
from services.merchant.application import MerchantApp

Context = grpc.aio.ServicerContext[Any, Any]


class MerchantServicer(merchant_pb2_grpc.MerchantServiceServicer):
    def __init__(self, app: MerchantApp) -> None:
        self.app = app

    async def CreateMerchant(self, request: pb.CreateMerchantRequest, context: Context) -> pb.Merchant:
        return await self.app.create_merchant(request)

    async def GetMerchant(self, request: pb.GetMerchantRequest, context: Context) -> pb.Merchant:
        return await self.app.get_merchant(request)

    async def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Context) -> pb.Merchant:
        return await self.app.update_merchant(request)

    async def ListMerchants(
        self, request: pb.ListMerchantsRequest, context: Context
    ) -> pb.ListMerchantsResponse:
        return await self.app.list_merchants(request)

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        return await self.app.create_api_key(request)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        return await self.app.list_api_keys(request)

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Context) -> pb.ApiKey:
        return await self.app.revoke_api_key(request)

    async def VerifyApiKey(
        self, request: pb.VerifyApiKeyRequest, context: Context
    ) -> pb.VerifyApiKeyResponse:
        return await self.app.verify_api_key(request)


def register(server: grpc.aio.Server, runtime: Runtime) -> Sequence[str]:
    merchant_pb2_grpc.add_MerchantServiceServicer_to_server(MerchantServicer(MerchantApp(runtime)), server)
    return [pb.DESCRIPTOR.services_by_name["MerchantService"].full_name]
