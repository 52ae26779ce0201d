"""What the invoice service knows of a merchant: its own projection, or the merchant service.

The projection (`merchant_profiles`, fed from NATS) answers almost always. When it has no row,
or no wallet for the network asked about, it may just not have caught up with a change made a
moment ago; then the merchant service is asked over gRPC and its answer is written into the
projection, so an invoice created right after the merchant saved its xpub does not fail.

Profiles read are remembered (`known`), so a create need not read one before it takes its address
index; the index's statement returns the row as it is then, which the create checks its
remembered profile against (`remember` keeps the newer one).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import grpc
from checkout.merchant.v1 import merchant_pb2, merchant_pb2_grpc

from libs.common import context, grpc_tracing
from libs.common.config import Config
from libs.common.db import Connection
from libs.common.errors import NotFound, Unavailable
from libs.common.protoconv import datetime_of, plain
from services.invoice import repository

GET_MERCHANT_TIMEOUT_SECONDS = 5.0
# Merchants whose profiles a process keeps in memory (least recently used ones are dropped).
KNOWN_PROFILES_MAX = 10_000


@dataclass(frozen=True)
class MerchantProfile:
    merchant_id: uuid.UUID
    wallets: dict[str, str]
    settings: dict[str, Any]


class MerchantDirectory:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._channels = grpc_tracing.Channels()
        self._known: OrderedDict[uuid.UUID, MerchantProfile] = OrderedDict()
        self.fetched = 0  # gRPC fallbacks taken, for metrics and tests

    def known(self, merchant_id: uuid.UUID, network: str) -> MerchantProfile | None:
        """The profile last read of the merchant, if it has a wallet for `network`; not checked
        against the projection (the caller does that, see the module's doc)."""
        profile = self._known.get(merchant_id)
        if profile is None or network not in profile.wallets:
            return None
        self._known.move_to_end(merchant_id)
        return profile

    def remember(
        self, merchant_id: uuid.UUID, wallets: dict[str, str], settings: dict[str, Any]
    ) -> MerchantProfile:
        profile = MerchantProfile(merchant_id, dict(wallets), dict(settings))
        self._known[merchant_id] = profile
        self._known.move_to_end(merchant_id)
        if len(self._known) > KNOWN_PROFILES_MAX:
            self._known.popitem(last=False)
        return profile

    def _stub(self, shard: int) -> merchant_pb2_grpc.MerchantServiceAsyncStub:
        address = self.config.endpoint_for("merchant", shard)
        return merchant_pb2_grpc.MerchantServiceStub(self._channels.channel(address))

    async def profile(
        self, conn: Connection, merchant_id: uuid.UUID, shard: int, network: str
    ) -> MerchantProfile:
        """The merchant's profile, fresh enough to hold a wallet for `network` if it has one."""
        row = await repository.merchant_profile(conn, merchant_id)
        if row is not None and network in row["wallets"]:
            return self.remember(merchant_id, row["wallets"], row["settings"])
        merchant = await self._fetch(merchant_id, shard)
        wallets, settings = dict(merchant.wallets), plain(merchant.settings)
        await repository.upsert_merchant_profile(
            conn, merchant_id, wallets=wallets, settings=settings, at=datetime_of(merchant.updated_at)
        )
        return self.remember(merchant_id, wallets, settings)

    async def _fetch(self, merchant_id: uuid.UUID, shard: int) -> merchant_pb2.Merchant:
        ctx = context.current()
        metadata = (("x-request-id", ctx.request_id), ("x-actor", "service:invoice"))
        self.fetched += 1
        try:
            merchant: merchant_pb2.Merchant = await self._stub(shard).GetMerchant(
                merchant_pb2.GetMerchantRequest(merchant_id=str(merchant_id)),
                timeout=GET_MERCHANT_TIMEOUT_SECONDS,
                metadata=grpc_tracing.outgoing(metadata),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("merchant not found") from None
            raise Unavailable(f"the merchant service did not answer: {error.code().name}") from None
        return merchant

    async def close(self) -> None:
        await self._channels.close()
