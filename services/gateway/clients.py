"""gRPC channels to the services and the routing from an id to the instance serving its shard.

One `grpc.aio` channel per address (and one more while spans are recorded, see
libs/common/grpc_tracing.py), opened on first use and shared by every stub on it: several
services (or every shard, locally) may sit behind one address. A stub is made once per service and
address too (making one builds a callable per method, which every request would pay). Every id the platform mints
carries its owner's slot (libs/common/ids.py), so the shard is known without a lookup.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import grpc
from checkout.analytics.v1 import analytics_pb2_grpc
from checkout.customer.v1 import customer_pb2_grpc
from checkout.invoice.v1 import invoice_pb2_grpc
from checkout.merchant.v1 import merchant_pb2_grpc
from checkout.ops.v1 import ops_pb2_grpc
from grpc_health.v1 import health_pb2_grpc

from libs.common import grpc_tracing, ids
from libs.common.config import SERVICES, Config
from libs.common.context import REPLAYED_METADATA
from libs.common.shardmap import ShardMap
from libs.common.shardstore import ShardDirectory
from services.gateway.context import CallContext
from services.gateway.errors import from_grpc

log = logging.getLogger("checkout.gateway")
DEADLINE_SECONDS = 10.0

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Stub = TypeVar("Stub")


class Backends:
    def __init__(self, config: Config, *, deadline: float = DEADLINE_SECONDS) -> None:
        self.config = config
        # The live shard map and registry (libs/common/shardstore.py); until it has been read,
        # the configuration's, which is version 1.
        self.directory = ShardDirectory(config)
        self.deadline = deadline
        self._channels = grpc_tracing.Channels()
        self._stubs: dict[tuple[Callable[..., Any], grpc.aio.Channel], Any] = {}

    def _stub(self, make: Callable[[grpc.aio.Channel], Stub], address: str) -> Stub:
        channel = self.channel(address)
        stub: Stub | None = self._stubs.get((make, channel))
        if stub is None:
            stub = self._stubs[(make, channel)] = make(channel)
        return stub

    @property
    def shard_map(self) -> ShardMap:
        return self.directory.current

    async def open(self) -> None:
        """Reads the shard map; a control database not reachable (or not yet created by the
        services) leaves the configuration's view, and the directory's loop tries again."""
        try:
            await self.directory.refresh()
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as error:
            log.warning("shard map not read at start, routing by the configuration's: %s", error)

    def channel(self, address: str) -> grpc.aio.Channel:
        return self._channels.channel(address)

    def address(self, service: str, shard: int) -> str:
        return self.config.endpoint_for(service, shard)

    def shard_of(self, value: uuid.UUID) -> int:
        """The shard of any platform id: merchant, invoice, customer or API key."""
        return self.shard_map.shard_for_slot(ids.slot_of(value))

    def shards(self) -> list[int]:
        """Every registered shard, also one that owns no slots yet (it is served all the same)."""
        return sorted({r.shard for r in self.shard_map.ranges} | set(self.directory.shards))

    def addresses(self) -> dict[str, list[tuple[str, int]]]:
        """Every distinct address, with the (service, shard) pairs it serves."""
        served: dict[str, list[tuple[str, int]]] = {}
        for service in SERVICES:
            for shard in self.shards():
                served.setdefault(self.address(service, shard), []).append((service, shard))
        return served

    def merchants(self, shard: int) -> merchant_pb2_grpc.MerchantServiceAsyncStub:
        return self._stub(merchant_pb2_grpc.MerchantServiceStub, self.address("merchant", shard))

    def merchants_at(self, address: str) -> merchant_pb2_grpc.MerchantServiceAsyncStub:
        return self._stub(merchant_pb2_grpc.MerchantServiceStub, address)

    def invoices(self, shard: int) -> invoice_pb2_grpc.InvoiceServiceAsyncStub:
        return self._stub(invoice_pb2_grpc.InvoiceServiceStub, self.address("invoice", shard))

    def customers(self, shard: int) -> customer_pb2_grpc.CustomerServiceAsyncStub:
        return self._stub(customer_pb2_grpc.CustomerServiceStub, self.address("customer", shard))

    def analytics(self, shard: int) -> analytics_pb2_grpc.AnalyticsServiceAsyncStub:
        return self._stub(analytics_pb2_grpc.AnalyticsServiceStub, self.address("analytics", shard))

    def ops(self, service: str, shard: int) -> ops_pb2_grpc.OpsServiceAsyncStub:
        return self._stub(ops_pb2_grpc.OpsServiceStub, self.address(service, shard))

    def health(self, address: str) -> health_pb2_grpc.HealthStub:
        return self._stub(health_pb2_grpc.HealthStub, address)

    async def call(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        context: CallContext,
        *,
        deadline: float | None = None,
    ) -> Resp:
        """One unary call with the request's metadata and a deadline; failures as ApiError. The
        call's consistency token (trailing metadata) is kept for the response's header."""
        try:
            call = rpc(
                request, timeout=deadline or self.deadline, metadata=grpc_tracing.outgoing(context.metadata())
            )
            response = await call
            if context.consistency is not None:
                context.consistency.absorb(await call.trailing_metadata() or ())
            return response
        except grpc.RpcError as error:
            raise from_grpc(error) from error

    async def command(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        context: CallContext,
    ) -> tuple[Resp, bool]:
        """A call that may be an idempotent replay: the answer, and whether the service replayed
        a stored first result (it says so in trailing metadata) rather than running it now."""
        try:
            call = rpc(request, timeout=self.deadline, metadata=grpc_tracing.outgoing(context.metadata()))
            response = await call
            trailing = await call.trailing_metadata()
        except grpc.RpcError as error:
            raise from_grpc(error) from error
        if context.consistency is not None:
            context.consistency.absorb(trailing or ())
        replayed = any(key == REPLAYED_METADATA and value == "true" for key, value in trailing or ())
        return response, replayed

    async def close(self, grace: float = 1.0) -> None:
        self._stubs.clear()
        await self._channels.close(grace)
        await self.directory.close()
